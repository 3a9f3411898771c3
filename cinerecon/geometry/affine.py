"""Affine arithmetic for voxel grids and planes (4x4 voxel -> world matrices, mm)."""

from __future__ import annotations

import numpy as np


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (..., 3) voxel coordinates to world (or any 4x4 transform of points)."""
    points = np.asarray(points, dtype=float)
    return points @ affine[:3, :3].T + affine[:3, 3]


def world_to_voxel(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (..., 3) world coordinates to (fractional) voxel coordinates."""
    return apply_affine(np.linalg.inv(affine), points)


def spacing(affine: np.ndarray) -> np.ndarray:
    """Voxel size along each array axis (mm): the column norms of the linear part."""
    return np.linalg.norm(affine[:3, :3], axis=0)


def _translation(offset) -> np.ndarray:
    t = np.eye(4)
    t[:3, 3] = offset
    return t


def crop_affine(affine: np.ndarray, start_voxel) -> np.ndarray:
    """Affine of a sub-grid whose voxel (0, 0, 0) is `start_voxel` of the original grid."""
    return affine @ _translation(np.asarray(start_voxel, dtype=float))


def slice_affine(affine: np.ndarray, k: float) -> np.ndarray:
    """Affine of slice k of a stack, as a one-slice volume (its voxel z = 0 is slice k)."""
    return crop_affine(affine, (0.0, 0.0, k))


def stack_slice_affines(affine: np.ndarray, n_slices: int) -> np.ndarray:
    """(n_slices, 4, 4) per-slice affines of a stack that shares one affine."""
    return np.stack([slice_affine(affine, k) for k in range(n_slices)])


def in_plane_axes(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors (world) of a slice's i and j pixel axes."""
    lin = affine[:3, :3]
    return lin[:, 0] / np.linalg.norm(lin[:, 0]), lin[:, 1] / np.linalg.norm(lin[:, 1])


def plane_normal(affine: np.ndarray) -> np.ndarray:
    """Unit normal of the plane spanned by a slice's i and j axes (sign follows i x j)."""
    u, v = in_plane_axes(affine)
    n = np.cross(u, v)
    return n / np.linalg.norm(n)


def shift_slice_affine(affine: np.ndarray, dx_mm: float, dy_mm: float) -> np.ndarray:
    """Move a slice's pixels by (dx, dy) mm along its own i and j axes (world shift)."""
    u, v = in_plane_axes(affine)
    shifted = affine.copy()
    shifted[:3, 3] = affine[:3, 3] + dx_mm * u + dy_mm * v
    return shifted


def upsample_z_affine(affine: np.ndarray, k: int) -> np.ndarray:
    """Affine of a stack resampled k times finer in z: new slice j*k sits on old slice j."""
    return affine @ np.diag([1.0, 1.0, 1.0 / k, 1.0])


def plane_pixel_centres(affine: np.ndarray, shape: tuple[int, int], k: float = 0.0) -> np.ndarray:
    """World positions (nx, ny, 3) of the pixel centres of slice k of a grid."""
    i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    ijk = np.stack([i, j, np.full(i.shape, float(k))], axis=-1)
    return apply_affine(affine, ijk)
