"""Evaluation against a high-resolution truth label volume (synthetic cohort only)."""

from __future__ import annotations

import numpy as np

from cinerecon.geometry import apply_affine, sample_labels
from cinerecon.labels import SAX_LABELS
from cinerecon.metrics.overlap import dice
from cinerecon.metrics.surface import surface_metrics


def on_grid(volume: np.ndarray, affine: np.ndarray, shape, grid_affine: np.ndarray) -> np.ndarray:
    """Nearest-neighbour labels of a volume on another grid (background outside it)."""
    out = np.zeros(shape, dtype=np.uint8)
    volume = np.asarray(volume, dtype=float)  # once, not per slab (sample_labels would convert it)
    i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    for k in range(shape[2]):  # slab by slab keeps memory flat for large truth grids
        points = apply_affine(grid_affine, np.stack([i, j, np.full(i.shape, k)], axis=-1))
        out[:, :, k] = sample_labels(volume, affine, points, "nearest")
    return out


def truth_rows(volume, affine, truth, truth_affine, **keys) -> list[dict]:
    """3D Dice, HD95 and ASSD (mm) per SAX structure, on the truth grid."""
    truth = np.where(np.isin(truth, list(SAX_LABELS)), truth, 0)
    pred = on_grid(volume, affine, truth.shape, truth_affine)
    spacing = tuple(np.linalg.norm(truth_affine[:3, :3], axis=0))
    rows = []
    for label, name in SAX_LABELS.items():
        p, t = pred == label, truth == label
        surf = surface_metrics(p, t, spacing)
        rows.append({**keys, "structure": name, "dice": dice(p, t),
                     "hd95": surf["hd95"], "assd": surf["assd"]})
    return rows
