"""Resampling volumes at world positions: images linearly, labels by nearest or one-hot."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cinerecon.geometry.affine import plane_pixel_centres, upsample_z_affine, world_to_voxel


def sample_image(volume: np.ndarray, affine: np.ndarray, points: np.ndarray,
                 order: int = 1, fill: float = 0.0) -> np.ndarray:
    """Interpolate a 3D image at world points (..., 3); outside the grid gives `fill`."""
    vox = world_to_voxel(affine, points)
    flat = vox.reshape(-1, 3).T
    values = ndimage.map_coordinates(np.asarray(volume, dtype=float), flat, order=order,
                                     mode="constant", cval=fill)
    return values.reshape(points.shape[:-1])


def sample_labels(volume: np.ndarray, affine: np.ndarray, points: np.ndarray,
                  method: str = "nearest") -> np.ndarray:
    """Sample a 3D label map at world points; outside the grid is background (0).

    `nearest` takes the label of the closest voxel; `onehot` interpolates each label's
    indicator linearly and takes the argmax, which gives smoother boundaries when the
    target grid is finer than the source.
    """
    volume = np.asarray(volume)
    if method == "nearest":
        return sample_image(volume, affine, points, order=0).round().astype(np.uint8)
    if method != "onehot":
        raise ValueError(f"unknown label sampling method {method!r}")
    labels = np.unique(volume)
    labels = labels[labels != 0]
    best = np.full(points.shape[:-1], 0.5)  # background wins unless a label covers > half
    out = np.zeros(points.shape[:-1], dtype=np.uint8)
    for label in labels:
        weight = sample_image((volume == label).astype(float), affine, points, order=1)
        better = weight > best
        out[better] = label
        best = np.where(better, weight, best)
    return out


def resample_image_to_plane(volume, affine, plane_affine, shape, order: int = 1,
                            fill: float = 0.0) -> np.ndarray:
    """Image values of a 3D volume on the pixel grid (shape) of a plane affine."""
    return sample_image(volume, affine, plane_pixel_centres(plane_affine, shape), order, fill)


def resample_labels_to_plane(volume, affine, plane_affine, shape,
                             method: str = "nearest") -> np.ndarray:
    """Labels of a 3D label volume on the pixel grid (shape) of a plane affine."""
    return sample_labels(volume, affine, plane_pixel_centres(plane_affine, shape), method)


def upsample_stack_z(stack: np.ndarray, affine: np.ndarray, k: int,
                     order: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Resample a (X, Y, Z) stack k times finer in z between its first and last slice.

    Returns the new stack of (Z - 1) * k + 1 slices, slice j*k equal to input slice j,
    and its affine. order=0 repeats the nearest slice (labels), order=1 interpolates.
    """
    nz = stack.shape[2]
    z_new = np.arange((nz - 1) * k + 1) / k
    if order == 0:
        idx = np.floor(z_new + 0.5).astype(int).clip(0, nz - 1)
        return stack[:, :, idx], upsample_z_affine(affine, k)
    lo = np.floor(z_new).astype(int).clip(0, nz - 1)
    hi = np.minimum(lo + 1, nz - 1)
    w = (z_new - lo)[None, None, :]
    data = stack.astype(float)
    out = (1 - w) * data[:, :, lo] + w * data[:, :, hi]
    return out, upsample_z_affine(affine, k)
