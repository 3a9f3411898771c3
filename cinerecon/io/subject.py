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

from cinerecon.geometry import plane_normal
from cinerecon.io.nifti import InputError, frame_interval, load_nifti
from cinerecon.labels import LAX_CONVENTIONS, LAX_VIEWS, SAX_LABELS, describe_convention, lax_value_table
from cinerecon.phenotypes import LabelFramesError, ed_es_frames

log = logging.getLogger(__name__)

VIEWS = ("sa",) + tuple(f"la_{v}" for v in LAX_VIEWS)
MIN_SPACING_MM, MAX_SPACING_MM = 0.2, 25.0
# A cine covers one cardiac cycle (retrospective gating: frames x interval = R-R interval);
# 0.2-3 s spans 20-300 bpm. A recorded frame interval outside it is in the wrong units or junk.
MIN_CYCLE_S, MAX_CYCLE_S = 0.2, 3.0
# LAX planes must meet the SAX stack (validate_lax_geometry): a long-axis plane contains the
# LV long axis, to which the SAX slices are planned perpendicular, so it cuts every SAX slice
# plane along a line across the heart. Refused: a plane within LAX_SAX_MIN_ANGLE_DEG of
# parallel to the SAX slices, or one that cuts fewer than max(2, ceil(Z / 2)) of the Z slices
# along at least LAX_SAX_MIN_CUT_MM of line inside both images' fields of view.
LAX_SAX_MIN_ANGLE_DEG = 30.0
LAX_SAX_MIN_CUT_MM = 20.0


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


def _dtype_name(dtype: np.dtype) -> str:
    return f"RGB {dtype}" if dtype.names else str(dtype)


def validate_image(subject: str, path, data: np.ndarray, affine: np.ndarray, view: str) -> None:
    """Raise InputError if a cine cannot be used (dims, dtype, geometry, content).

    Content: finite, not all zeros, not constant, no frame without spatial variation (a blank
    frame), no SAX slice constant over the whole cine (a blank slice), and not the same image
    in every frame (a still stored as a cine): real cines have noise and motion.
    """
    def fail(reason):
        raise InputError(subject, path, reason)

    if data.ndim != 4:
        fail(f"expected a 4D cine (X, Y, Z, T), got shape {data.shape}")
    if data.dtype.kind not in "iuf":
        fail(f"image data type {_dtype_name(data.dtype)} is not a real-valued numeric intensity "
             "(RGB, complex, boolean and other types are not MR magnitude cines)")
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
        fail(f"voxel spacing {np.round(spacing, 3).tolist()} mm is implausible "
             f"(each must be within {MIN_SPACING_MM}-{MAX_SPACING_MM} mm)")
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        fail("image contains NaN or infinite values")
    if not np.any(data):
        fail("image is all zeros")
    lo, hi = data.min(axis=(0, 1)), data.max(axis=(0, 1))      # (Z, T) per 2D image
    if lo.min() == hi.max():
        fail(f"image is constant (every voxel = {lo.min()}): no anatomy")
    blank_frames = np.flatnonzero(lo.min(axis=0) == hi.max(axis=0))
    if blank_frames.size:
        t = int(blank_frames[0])
        fail(f"{blank_frames.size} of {nt} frame(s) have no spatial variation (frame {t}: every "
             f"voxel = {lo[:, t].min()})")
    blank_slices = np.flatnonzero(lo.min(axis=1) == hi.max(axis=1))
    if blank_slices.size:
        k = int(blank_slices[0])
        fail(f"{blank_slices.size} of {nz} slice(s) are blank in every frame (slice {k}: every "
             f"voxel = {lo[k].min()})")
    if all(np.array_equal(data[..., t], data[..., 0]) for t in range(1, nt)):
        fail(f"all {nt} frames are identical: no temporal variation (a still image stored as a "
             "cine?)")


def frame_interval_problem(interval_s: float | None, n_frames: int) -> str | None:
    """Why a recorded frame interval cannot be this cine's (None when it can, or when none is
    recorded): the frames must span one plausible cardiac cycle, MIN_CYCLE_S..MAX_CYCLE_S."""
    if interval_s is None:
        return None
    if not np.isfinite(interval_s) or interval_s <= 0:
        return f"frame interval {interval_s} is not a positive number"
    cycle = interval_s * n_frames
    if not MIN_CYCLE_S <= cycle <= MAX_CYCLE_S:
        return (f"frame interval {interval_s:.6g} s x {n_frames} frames = {cycle:.4g} s is not one "
                f"cardiac cycle ({MIN_CYCLE_S}-{MAX_CYCLE_S} s)")
    return None


def checked_frame_interval(subject: str, path, header, n_frames: int) -> float | None:
    """The cine's frame interval (s) from pixdim[4], or None with a warning when it is not
    recorded or cannot be this cine's.

    Not an input fault: the images are usable and common writers put other things there
    (nibabel's default 1, dcm2niix the repetition time of a few ms, NaN); a None interval
    makes the heart rate unknown downstream rather than wrong. Views are not compared with
    each other: SAX and LAX come from separate breath-holds whose R-R intervals differ.
    """
    raw = float(header["pixdim"][4]) if len(header.get_zooms()) > 3 else 0.0
    if not np.isfinite(raw):
        log.warning("subject %s: %s: frame interval (pixdim[4]) is %s; ignored (heart rate "
                    "unknown)", subject, Path(path).name, raw)
        return None
    interval = frame_interval(header)
    problem = frame_interval_problem(interval, n_frames)
    if problem:
        log.warning("subject %s: %s: %s; pixdim[4] or its time unit is not the frame interval: "
                    "ignored (heart rate unknown)", subject, Path(path).name, problem)
        return None
    return interval


def _fov_interval(affine_inv: np.ndarray, shape, point, direction):
    """Parameters s (mm) for which point + s * direction lies inside a slice's field of view
    (voxel i in [-0.5, nx - 0.5], j in [-0.5, ny - 0.5]); (lo, hi), empty when lo >= hi."""
    v0 = affine_inv[:2, :3] @ point + affine_inv[:2, 3]
    dv = affine_inv[:2, :3] @ direction
    lo, hi = -np.inf, np.inf
    for a, b, n in zip(v0, dv, shape[:2]):
        if abs(b) < 1e-12:
            if not -0.5 <= a <= n - 0.5:
                return 0.0, 0.0
            continue
        s1, s2 = (-0.5 - a) / b, (n - 0.5 - a) / b
        lo, hi = max(lo, min(s1, s2)), min(hi, max(s1, s2))
    return lo, hi


def lax_sax_intersections(lax_affine: np.ndarray, lax_shape, sax_affine: np.ndarray, sax_shape):
    """(angle between the LAX plane and the SAX slices in degrees, per SAX slice the length in
    mm of the line where the LAX plane cuts that slice's plane inside both fields of view).

    The lengths are all zero when the planes are parallel (|n_lax x n_sax| < 1e-8). Fields of
    view are the pixel rectangles' outer edges (voxel -0.5 .. n - 0.5).
    """
    n_lax, n_sax = plane_normal(lax_affine), plane_normal(sax_affine)
    direction = np.cross(n_sax, n_lax)
    sine = np.linalg.norm(direction)
    angle = float(np.degrees(np.arcsin(np.clip(sine, 0.0, 1.0))))
    nz = sax_shape[2]
    lengths = np.zeros(nz)
    if sine < 1e-8:
        return angle, lengths
    direction /= sine
    lax_origin = lax_affine[:3, 3]
    lax_inv, sax_inv = np.linalg.inv(lax_affine), np.linalg.inv(sax_affine)
    system = np.stack([n_sax, n_lax, direction])
    for k in range(nz):
        sax_origin = sax_affine[:3, :3] @ [0.0, 0.0, k] + sax_affine[:3, 3]
        # the point of the intersection line closest to the LAX origin
        point = np.linalg.solve(system, [n_sax @ sax_origin, n_lax @ lax_origin,
                                         direction @ lax_origin])
        a_lo, a_hi = _fov_interval(lax_inv, lax_shape, point, direction)
        b_lo, b_hi = _fov_interval(sax_inv, sax_shape, point, direction)
        lengths[k] = max(0.0, min(a_hi, b_hi) - max(a_lo, b_lo))
    return angle, lengths


def validate_lax_geometry(subject: str, path, lax_shape, lax_affine: np.ndarray,
                          sax_shape, sax_affine: np.ndarray) -> None:
    """Raise InputError (naming the LAX file) if a LAX plane does not meet the SAX stack.

    Rule (constants above): the LAX plane must make at least LAX_SAX_MIN_ANGLE_DEG with the
    SAX slices, and cut at least max(2, ceil(Z / 2)) of the Z SAX slices along a line that
    runs LAX_SAX_MIN_CUT_MM or more inside both images' fields of view. UK Biobank LAX views
    (~380 x 340 mm, through the LV long axis) cut every slice of the stack; a plane moved off
    the heart, or a SAX-like plane filed as a LAX view, cuts none or few.
    """
    angle, lengths = lax_sax_intersections(lax_affine, lax_shape, sax_affine, sax_shape)
    if angle < LAX_SAX_MIN_ANGLE_DEG:
        raise InputError(subject, path, f"LAX plane is {angle:.1f} deg from parallel to the SAX "
                                        f"slices (need at least {LAX_SAX_MIN_ANGLE_DEG:.0f} deg): "
                                        "not a long-axis view of this SAX stack")
    nz = sax_shape[2]
    need = max(2, -(-nz // 2))
    cut = int(np.sum(lengths >= LAX_SAX_MIN_CUT_MM))
    if cut < need:
        raise InputError(subject, path, f"LAX plane cuts {cut} of {nz} SAX slices inside both "
                                        f"fields of view (need {need}, each over at least "
                                        f"{LAX_SAX_MIN_CUT_MM:.0f} mm): it does not meet the SAX "
                                        "stack")


def validate_labels(subject: str, path, labels: np.ndarray, affine: np.ndarray, view: str,
                    image_shape: tuple, image_affine: np.ndarray, convention: str = "full") -> None:
    """Raise InputError if a label map does not match its image or the label convention
    (LAX views: the cohort's declared convention, see cinerecon.labels.LAX_CONVENTIONS)."""
    if labels.dtype.kind not in "buif":
        raise InputError(subject, path, f"label data type {_dtype_name(labels.dtype)} is not an "
                                        "integer label map")
    if labels.shape != tuple(image_shape):
        raise InputError(subject, path, f"label shape {labels.shape} != image shape {tuple(image_shape)}")
    if not np.allclose(affine, image_affine, atol=1e-3):
        raise InputError(subject, path, "label affine differs from the image affine")
    if labels.dtype.kind == "f" and not np.all(np.isfinite(labels)):
        raise InputError(subject, path, "labels contain NaN or infinite values")
    if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
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
    """Load and validate one view's cine; returns (data, affine, frame_interval_s), the
    interval None when not recorded or implausible (checked_frame_interval)."""
    path = Path(folder) / image_name(view)
    data, affine, header = load_nifti(path, subject)
    validate_image(subject, path, data, affine, view)
    return data, affine, checked_frame_interval(subject, path, header, data.shape[3])


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
