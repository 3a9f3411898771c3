"""The high-resolution z-grid shared by every reconstruction method.

A stack of n slices at spacing s is reconstructed on a grid k times finer in z that
covers each acquired slice's slab: from half a spacing before the first slice centre to
half a spacing after the last one. Inside, methods interpolate between adjacent slices;
in those two half-slabs (base and apex) every method extrapolates the same way, by
repeating the end slice, so volumes are comparable with the disc-summation volumes of
the acquired stack. Acquired slice j lands exactly on fine slice j*k + pad.
"""

from __future__ import annotations

import numpy as np


def z_upsampling_factor(slice_spacing_mm: float, target_spacing_mm: float) -> int:
    """k so that the fine spacing is as close as possible to the target (k >= 1)."""
    return max(1, int(round(slice_spacing_mm / target_spacing_mm)))


def pad_slices(k: int) -> int:
    """Fine slices added beyond each end slice: half a spacing."""
    return k // 2


def fine_positions(n_slices: int, k: int) -> np.ndarray:
    """Positions (in acquired-slice units) of the fine slices, end slabs included."""
    pad = pad_slices(k)
    m = np.arange((n_slices - 1) * k + 1 + 2 * pad)
    return (m - pad) / k


def fine_affine(affine: np.ndarray, k: int) -> np.ndarray:
    """Affine of the fine grid: fine index m sits at acquired z = (m - pad) / k."""
    pad = pad_slices(k)
    to_coarse = np.eye(4)
    to_coarse[2, 2] = 1.0 / k
    to_coarse[2, 3] = -pad / k
    return affine @ to_coarse


def acquired_index(j: int, k: int) -> int:
    """Fine-grid index of acquired slice j."""
    return j * k + pad_slices(k)


def slice_pairs(n_slices: int, k: int):
    """Yield (fine indices, lower slice j, fractions t) for every fine slice.

    t == 0 means the fine slice is acquired slice j itself (or an end-slab copy of it);
    0 < t < 1 means interpolate between slices j and j + 1.
    """
    z = np.clip(fine_positions(n_slices, k), 0, n_slices - 1)
    lower = np.minimum(np.floor(z).astype(int), n_slices - 1)
    t = z - lower
    exact = np.isclose(t, 0) | np.isclose(t, 1)
    lower = np.where(np.isclose(t, 1), lower + 1, lower)
    t = np.where(exact, 0.0, t)
    for j in range(n_slices):
        idx = np.flatnonzero((lower == j) & (t == 0))
        if len(idx):
            yield idx, j, t[idx]
    for j in range(n_slices - 1):
        idx = np.flatnonzero((lower == j) & (t > 0))
        if len(idx):
            yield idx, j, t[idx]
