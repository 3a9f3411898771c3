"""Where the heart is in each SAX slice, without labels: the part of the cine that moves.

The SAX/LAX profiles are compared only there. Around the apex a slice's heart section is
a few hundred pixels while its intersection lines cross far more chest wall, lung and
liver; those do not move with the heart's breath-hold displacement and pull the estimate
towards no shift. A slice's region is the moving pixels of that slice and its neighbours
(the apical cap barely moves itself, the slice above it does) or, where none of them
moves above the noise, of the nearest slices that do; grown by a margin.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cinerecon.preprocess.crop import NOISE_FACTOR, temporal_std

MIN_REGION_MM2 = 20.0   # smaller moving specks are noise or flow artefacts


def moving_pixels(cine: np.ndarray, spacing_xy) -> np.ndarray:
    """(X, Y, Z) pixels whose temporal std is far above the stack's noise floor,
    closed and hole-filled per slice, specks removed."""
    # Spatial smoothing first: noise falls ~3x, the heart's moving edges hardly change.
    std = temporal_std(ndimage.gaussian_filter(np.asarray(cine, dtype=np.float32),
                                               sigma=(1.0, 1.0) + (0,) * (cine.ndim - 2)))
    # floor: rounding in the smoothing of a still cine is not motion
    floor = max(float(np.median(std)), 1e-4 * float(np.abs(cine).max()), 1e-6)
    moving = std > NOISE_FACTOR * floor
    min_pixels = MIN_REGION_MM2 / float(np.prod(spacing_xy))
    out = np.zeros(moving.shape, dtype=bool)
    for k in range(moving.shape[2]):
        filled = ndimage.binary_fill_holes(ndimage.binary_closing(moving[:, :, k], iterations=2))
        parts, n = ndimage.label(filled)
        sizes = ndimage.sum(filled, parts, index=np.arange(1, n + 1))
        out[:, :, k] = np.isin(parts, 1 + np.flatnonzero(sizes >= min_pixels))
    return out


def heart_regions(cine: np.ndarray, spacing_xy, margin_mm: float = 10.0, reach: int | None = None) -> np.ndarray:
    """(X, Y, Z) bool: per slice, the moving pixels of the nearest slices that move (itself
    and its neighbours, or farther, up to `reach` slices away), grown by margin_mm. A slice
    with nothing moving that near gets an empty region."""
    spacing_xy = np.asarray(spacing_xy, dtype=float)
    moving = moving_pixels(cine, spacing_xy)
    n = moving.shape[2]
    reach = n if reach is None else reach
    moves = moving.any(axis=(0, 1))
    out = np.zeros(moving.shape, dtype=bool)
    for k in range(n):
        for distance in range(1, reach + 1):
            lo, hi = max(0, k - distance), k + distance + 1
            if moves[lo:hi].any():
                near = moving[:, :, lo:hi].any(axis=2)
                out[:, :, k] = ndimage.distance_transform_edt(~near, sampling=spacing_xy) <= margin_mm
                break
    return out
