"""File-level reconstruction step: SAX label cine -> high-resolution ED/ES label volumes."""

from __future__ import annotations

import logging
import time

import numpy as np

from cinerecon.baselines import reconstruct_labels
from cinerecon.baselines.grid import pad_slices, z_upsampling_factor
from cinerecon.io.files import write_json
from cinerecon.io.nifti import InputError, load_nifti, save_nifti
from cinerecon.io.subject import label_ed_es

log = logging.getLogger(__name__)

PHASES = ("ED", "ES")


def reconstruct_subject(subject: str, label_path, method: str, target_spacing_mm: float,
                        outputs: dict, record_path) -> dict:
    """Reconstruct ED and ES label volumes; outputs = {"ED": path, "ES": path}."""
    labels, affine, _ = load_nifti(label_path, subject)
    if labels.ndim != 4 or not (labels == 1).any():
        raise InputError(subject, label_path, "need a 4D SAX label cine with an LV blood pool")
    frames = label_ed_es(subject, label_path, labels, affine)
    k = z_upsampling_factor(float(np.linalg.norm(affine[:3, 2])), target_spacing_mm)
    record = {"subject": subject, "method": method, "k": k, "pad_slices": pad_slices(k),
              "n_slices": int(labels.shape[2]), "n_frames": int(labels.shape[3]), "frames": frames}
    for phase in PHASES:  # (no timings in the record: the same inputs give the same bytes)
        start = time.perf_counter()
        volume, fine_affine = reconstruct_labels(labels[..., frames[phase]], affine, k, method)
        log.info("subject %s: %s %s reconstructed in %.2f s", subject, method, phase, time.perf_counter() - start)
        save_nifti(outputs[phase], volume, fine_affine, dtype=np.uint8)
    write_json(record_path, record)
    return record


def heldout_linear_rows(subject: str, image_path, label_path):
    """The linear baseline's held-out-slice rows (cinerecon.metrics.heldout) at ED and ES:
    the image and the one-hot label probabilities averaged between slices j-1 and j+1."""
    import pandas as pd

    from cinerecon.baselines.methods import LinearOneHot, SAX_CLASSES
    from cinerecon.metrics.heldout import heldout_rows, neighbour_midpoints
    from cinerecon.models.data import normalise_intensity

    image, affine, _ = load_nifti(image_path, subject)
    labels, _, _ = load_nifti(label_path, subject)
    if labels.ndim != 4 or labels.shape != image.shape:
        raise InputError(subject, label_path, f"labels {labels.shape} do not match the SAX cine {image.shape}")
    frames = label_ed_es(subject, label_path, labels, affine)
    image = normalise_intensity(image)
    spacing_xy = np.linalg.norm(affine[:3, :2], axis=0)
    rows = []
    for phase in PHASES:
        t = frames[phase]
        stack = np.moveaxis(image[..., t], -1, 0)                          # (Z, X, Y)
        truth = np.moveaxis(labels[..., t], -1, 0)
        prob = np.moveaxis(LinearOneHot(labels[..., t], spacing_xy).prob, -1, 0)  # (Z, C, X, Y)
        mid_images = neighbour_midpoints(stack, _lerp)
        mid_labels = np.asarray(SAX_CLASSES, np.uint8)[neighbour_midpoints(prob, _lerp).argmax(axis=1)]
        rows.append(heldout_rows(subject, "linear", phase, mid_images, mid_labels, stack, truth))
    return pd.concat(rows, ignore_index=True)


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    t = t.reshape(t.shape + (1,) * (a.ndim - 1))
    return (1 - t) * a + t * b
