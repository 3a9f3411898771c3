"""3D reconstruction baselines from a sparse SAX label stack: nn, linear, sdf, cpd."""

from __future__ import annotations

import numpy as np

from cinerecon.baselines import grid
from cinerecon.baselines.cpd import CoherentPointDrift
from cinerecon.baselines.methods import METHODS as _METHODS
from cinerecon.baselines.methods import interpolate_image

METHODS = {**_METHODS, "cpd": CoherentPointDrift}
BASELINES = tuple(METHODS)


def _fill_fine_grid(stack: np.ndarray, k: int, between, dtype) -> np.ndarray:
    """Fine z-grid: acquired slices copied, the rest from between(j, fractions)."""
    n_fine = len(grid.fine_positions(stack.shape[2], k))
    out = np.zeros(stack.shape[:2] + (n_fine,), dtype=dtype)
    for idx, j, ts in grid.slice_pairs(stack.shape[2], k):
        if np.all(ts == 0):
            out[:, :, idx] = stack[:, :, j][..., None]
        else:
            out[:, :, idx] = np.moveaxis(between(j, ts), 0, -1)
    return out


def reconstruct_labels(stack: np.ndarray, affine: np.ndarray, k: int, method: str):
    """High-resolution (X, Y, fine Z) labels and affine from an (X, Y, Z) label stack."""
    if method not in METHODS:
        raise ValueError(f"unknown reconstruction method {method!r}; choose from {BASELINES}")
    if stack.ndim != 3:
        raise ValueError(f"expected an (X, Y, Z) label stack, got shape {stack.shape}")
    spacing_xy = np.linalg.norm(affine[:3, :2], axis=0)
    interpolator = METHODS[method](stack, spacing_xy)
    return _fill_fine_grid(stack, k, interpolator.between, np.uint8), grid.fine_affine(affine, k)


def reconstruct_image(stack: np.ndarray, affine: np.ndarray, k: int, method: str = "linear"):
    """High-resolution image by linear (or nearest) interpolation on the shared grid."""
    def between(j, ts):
        return interpolate_image(stack, j, np.round(ts) if method == "nn" else ts)

    return _fill_fine_grid(stack, k, between, np.float32), grid.fine_affine(affine, k)
