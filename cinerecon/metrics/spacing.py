"""Voxel spacing from the affine, the only source of geometry (DESIGN.md)."""

from __future__ import annotations

import numpy as np


def spacing_from_affine(affine) -> tuple[float, ...]:
    """Per-axis voxel size in mm: the column norms of ``affine[:3, :3]`` (rotation-invariant)."""
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4):
        raise ValueError(f"expected a 4x4 affine, got shape {affine.shape}")
    return tuple(float(n) for n in np.linalg.norm(affine[:3, :3], axis=0))
