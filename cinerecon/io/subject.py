"""A subject's cine NIfTI files: names, loading and validation.

Layout of a subject folder (UK Biobank conversions use the same names):
`sa.nii.gz` (X, Y, Z, T), `la_{2,3,4}ch.nii.gz` (X, Y, 1, T), optional labels
`label_sa.nii.gz`, `label_la_{2,3,4}ch.nii.gz` with the image's shape and affine.
"""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np

from cinerecon.io.nifti import InputError, frame_interval, load_nifti
from cinerecon.labels import LAX_CONVENTIONS, LAX_VIEWS, SAX_LABELS, describe_convention, lax_value_table
from cinerecon.phenotypes import LabelFramesError, ed_es_frames

log = logging.getLogger(__name__)

VIEWS = ("sa",) + tuple(f"la_{v}" for v in LAX_VIEWS)
MIN_SPACING_MM, MAX_SPACING_MM = 0.2, 25.0


def image_name(view: str) -> str:
    return f"{view}.nii.gz"


def label_name(view: str) -> str:
    return f"label_{view}.nii.gz"


def allowed_labels(view: str, convention: str = "full") -> set[int]:
    """Values a label file of `view` may hold: SAX 0-3; LAX those of its convention."""
    if view == "sa":
        return {0, *SAX_LABELS}
    return {0, *LAX_CONVENTIONS[convention][view.removeprefix("la_")]}


def to_pipeline_values(labels: np.ndarray, view: str, convention: str = "full") -> np.ndarray:
    """A validated label file's values mapped to the pipeline's (LAX_CONVENTIONS), uint8."""
    labels = np.asarray(labels).astype(np.uint8)
    if view == "sa":
        return labels
    return lax_value_table(convention, view.removeprefix("la_"))[labels]


def validate_image(subject: str, path, data: np.ndarray, affine: np.ndarray, view: str) -> None:
    """Raise InputError if a cine cannot be used (dims, geometry, content)."""
    def fail(reason):
        raise InputError(subject, path, reason)

    if data.ndim != 4:
        fail(f"expected a 4D cine (X, Y, Z, T), got shape {data.shape}")
    nx, ny, nz, nt = data.shape
    if view == "sa" and nz < 2:
        fail(f"SAX stack has {nz} slice(s); need at least 2")
    if view != "sa" and nz != 1:
        fail(f"LAX view must have one slice (Z = 1), got Z = {nz}")
    if nt < 2:
        fail(f"cine has {nt} frame(s); need at least 2")
    if min(nx, ny) < 16:
        fail(f"in-plane matrix {nx}x{ny} is too small")
    if not np.all(np.isfinite(affine)):
        fail("affine contains non-finite values")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        fail("affine is singular")
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if np.any(spacing < MIN_SPACING_MM) or np.any(spacing > MAX_SPACING_MM):
        fail(f"voxel spacing {np.round(spacing, 3).tolist()} mm is implausible")
    if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
        fail("image contains NaN or infinite values")
    if not np.any(data):
        fail("image is all zeros")


def validate_labels(subject: str, path, labels: np.ndarray, affine: np.ndarray, view: str,
                    image_shape: tuple, image_affine: np.ndarray, convention: str = "full") -> None:
    """Raise InputError if a label map does not match its image or the label convention
    (LAX views: the cohort's declared convention, see cinerecon.labels.LAX_CONVENTIONS)."""
    if labels.shape != image_shape:
        raise InputError(subject, path, f"label shape {labels.shape} != image shape {image_shape}")
    if not np.allclose(affine, image_affine, atol=1e-3):
        raise InputError(subject, path, "label affine differs from the image affine")
    if np.issubdtype(labels.dtype, np.floating) and not np.all(np.isfinite(labels)):
        raise InputError(subject, path, "labels contain NaN or infinite values")
    if np.issubdtype(labels.dtype, np.floating) and not np.all(labels == np.round(labels)):
        raise InputError(subject, path, "labels are not integers")
    present = set(np.unique(labels).astype(int).tolist())
    allowed = allowed_labels(view, convention)
    bad = present - allowed
    if bad:
        meaning = ("SAX: 1 = LVC, 2 = LVM, 3 = RVC" if view == "sa" else
                   f"{convention!r} LAX convention on {view}: {describe_convention(convention, view.removeprefix('la_'))}")
        raise InputError(subject, path, f"unexpected label values {sorted(bad)} for view {view} "
                                        f"(allowed {sorted(allowed)}; {meaning})")


def load_view(folder, subject: str, view: str):
    """Load and validate one view's cine; returns (data, affine, frame_interval_s)."""
    path = Path(folder) / image_name(view)
    data, affine, header = load_nifti(path, subject)
    validate_image(subject, path, data, affine, view)
    return data, affine, frame_interval(header)


def image_geometry(folder, subject: str, view: str):
    """(shape, affine) of a view's cine from its header alone: no pixel data is read."""
    path = Path(folder) / image_name(view)
    if not path.exists():
        raise InputError(subject, path, "file is missing")
    try:
        img = nib.load(path)
    except Exception as exc:  # nibabel raises many types for corrupt headers
        raise InputError(subject, path, f"cannot read NIfTI header ({exc.__class__.__name__}: {exc})") from exc
    return img.shape, img.affine.copy()


def load_labels(folder, subject: str, view: str, image_shape, image_affine,
                convention: str = "full") -> np.ndarray:
    """Load and validate one view's labels; uint8 in the pipeline's values.

    A SAX label cine must label at least two frames (ED and ES). A LAX label file may be
    missing (ukbb has no 3ch labels; some annotated subjects lack a view): the view reads as
    all background, which every evaluation treats as unlabelled.
    """
    path = Path(folder) / label_name(view)
    if view != "sa" and not path.exists():
        if allowed_labels(view, convention) - {0}:  # a labelled subject may miss a LAX view's labels
            log.warning("subject %s: %s is missing: view %s has no manual labels", subject, path.name, view)
        return np.zeros(image_shape, np.uint8)
    labels, affine, _ = load_nifti(path, subject)
    validate_labels(subject, path, labels, affine, view, image_shape, image_affine, convention)
    labels = to_pipeline_values(labels, view, convention)
    if view == "sa":
        label_ed_es(subject, path, labels, affine)
    return labels


def check_frames_consistent(subject: str, folder, frames: dict) -> None:
    """All views of a subject must have the same number of cine frames."""
    counts = set(frames.values())
    if len(counts) > 1:
        raise InputError(subject, folder, f"views have different frame counts: {frames}")


def label_ed_es(subject: str, path, labels_4d: np.ndarray, affine: np.ndarray) -> dict[str, int]:
    """ED/ES frames of a subject's SAX label cine (phenotypes.ed_es_frames); a cine with
    fewer than two labelled frames raises InputError naming the subject and the file."""
    try:
        return ed_es_frames(labels_4d, affine)
    except LabelFramesError as exc:
        raise InputError(subject, path, str(exc)) from exc
