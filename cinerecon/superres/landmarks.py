"""V-AMA's rigid pre-alignment (section 3.2.1): six landmarks per stack, the LV myocardium's
and the RV blood pool's centroids on a basal, a mid and an apical slice, and the rigid
transform that best maps one stack's onto another's (Kabsch: SVD of the centred points).
Only training uses it: it pairs each source stack with a target stack showing the same
anatomy at the same place, so that the target network sees both together.
"""

from __future__ import annotations

import numpy as np

from cinerecon.geometry import apply_affine
from cinerecon.labels import LVM, RVC
from cinerecon.superres.data import sample_on_grid


class LandmarkError(ValueError):
    """A label stack without the structures the six landmarks need."""


def six_landmarks(labels: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World positions (6, 3): LV myocardium and RV centroids on the first, middle and last
    slice (in stack order, base to apex) holding both, from an (X, Y, Z) label stack."""
    both = [z for z in range(labels.shape[2]) if (labels[..., z] == LVM).any() and (labels[..., z] == RVC).any()]
    if len(both) < 3:
        raise LandmarkError(f"{len(both)} slices hold both LV myocardium and RV; the landmarks need 3")
    points = []
    for z in (both[0], both[len(both) // 2], both[-1]):
        for label in (LVM, RVC):
            i, j = np.nonzero(labels[..., z] == label)
            points.append(apply_affine(affine, np.array([i.mean(), j.mean(), z])))
    return np.array(points)


def kabsch(moving: np.ndarray, fixed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R, t) minimising sum |R moving_i + t - fixed_i|^2 over rotations R (det +1)."""
    mc, fc = moving.mean(0), fixed.mean(0)
    u, _, vt = np.linalg.svd((moving - mc).T @ (fixed - fc))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rotation = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return rotation, fc - rotation @ mc


def rigid_matrix(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = rotation, translation
    return out


def align_stack(moving: np.ndarray, moving_affine: np.ndarray, transform: np.ndarray, fixed_affine: np.ndarray,
                fixed_shape) -> np.ndarray:
    """The moving (X, Y, Z) stack, moved by `transform` (world -> world), on the fixed stack's
    grid (linear; outside the moving stack, its edge values)."""
    # a fixed voxel's world point p shows what the moving stack has at transform^-1 p
    moved_affine = transform @ moving_affine
    return sample_on_grid(moving, moved_affine, fixed_affine, fixed_shape, order=1, mode="nearest")
