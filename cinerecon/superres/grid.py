"""The high-resolution grid Gemini-GAN writes: a refinement of the aligned SAX crop's voxels.

In-plane, `xy_factor` f pixels per acquired pixel, placed as an image resized by f places
them (fine pixel m at acquired index (m + 0.5) / f - 0.5); through-plane the fine z-grid
of every reconstruction method (cinerecon.baselines.grid): k thin slices per acquired
spacing, acquired slice j on fine slice j k + k // 2, half a spacing beyond each end. The
synthetic 3D truth (cinerecon.synth.highres) lies on the same lattice, so with the same
factors the truth resampled onto this grid is the truth itself, voxel for voxel.
"""

from __future__ import annotations

import numpy as np

from cinerecon.baselines.grid import pad_slices


def lattice_affine(affine: np.ndarray, xy_factor: int, z_factor: int, start=(0, 0, 0)) -> np.ndarray:
    """Affine of the (f, f, k)-refined lattice of `affine`'s voxels whose voxel `start`
    (integers, refined units) is voxel 0: acquired index (a + 0.5) / f - 0.5 in-plane and
    c / k through-plane for refined index (a, b, c)."""
    f = float(xy_factor)
    to_acquired = np.diag([1 / f, 1 / f, 1 / z_factor, 1.0])
    to_acquired[:2, 3] = (np.asarray(start[:2], float) + 0.5) / f - 0.5
    to_acquired[2, 3] = start[2] / z_factor
    return np.asarray(affine, float) @ to_acquired


def highres_grid(affine: np.ndarray, shape, xy_factor: int, z_factor: int) -> tuple[np.ndarray, tuple]:
    """(affine, shape) of the high-resolution grid over a stack of `shape` (X, Y, Z)."""
    pad = pad_slices(z_factor)
    x, y, z = shape[:3]
    fine = (x * xy_factor, y * xy_factor, (z - 1) * z_factor + 1 + 2 * pad)
    return lattice_affine(affine, xy_factor, z_factor, (0, 0, -pad)), fine
