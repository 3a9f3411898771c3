"""File-level reconstruction step: SAX label cine -> high-resolution ED/ES label volumes."""

from __future__ import annotations

import time

import numpy as np

from cinerecon.baselines import reconstruct_labels
from cinerecon.baselines.grid import pad_slices, z_upsampling_factor
from cinerecon.io.files import write_json
from cinerecon.io.nifti import InputError, load_nifti, save_nifti
from cinerecon.phenotypes import find_es_frame, volume_curve_ml

PHASES = ("ED", "ES")


def ed_es_frames(labels_4d: np.ndarray, affine: np.ndarray) -> dict:
    """ED = frame 0; ES = frame of minimal LV blood-pool volume."""
    return {"ED": 0, "ES": find_es_frame(volume_curve_ml(labels_4d, affine))}


def reconstruct_subject(subject: str, label_path, method: str, target_spacing_mm: float,
                        outputs: dict, record_path) -> dict:
    """Reconstruct ED and ES label volumes; outputs = {"ED": path, "ES": path}."""
    labels, affine, _ = load_nifti(label_path, subject)
    if labels.ndim != 4 or not (labels == 1).any():
        raise InputError(subject, label_path, "need a 4D SAX label cine with an LV blood pool")
    frames = ed_es_frames(labels, affine)
    k = z_upsampling_factor(float(np.linalg.norm(affine[:3, 2])), target_spacing_mm)
    record = {"subject": subject, "method": method, "k": k, "pad_slices": pad_slices(k),
              "n_slices": int(labels.shape[2]), "n_frames": int(labels.shape[3]), "frames": frames, "seconds": {}}
    for phase in PHASES:
        start = time.perf_counter()
        volume, fine_affine = reconstruct_labels(labels[..., frames[phase]], affine, k, method)
        record["seconds"][phase] = time.perf_counter() - start
        save_nifti(outputs[phase], volume, fine_affine, dtype=np.uint8)
    write_json(record_path, record)
    return record
