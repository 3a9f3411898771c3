"""Structure volumes by voxel counting, as the UK Biobank community pipeline (Bai et al. 2018) does.

A structure's volume is its voxel count times the voxel volume |det(affine[:3, :3])|
in mm^3 / 1000 = mL. For a SAX stack the third column of the affine is the slice
*spacing* (not the 8 mm slice thickness), so each slice stands for the slab up to
the next one, exactly as ``ukbb_cardiac`` multiplies by ``pixdim``. The determinant
equals the product of the column norms for any rotation and also stays right for
sheared affines.
"""

from __future__ import annotations

import numpy as np

from ..labels import LVC, SAX_LABELS

MM3_PER_ML = 1000.0


def voxel_volume_ml(affine) -> float:
    """Volume of one voxel in mL from the voxel-to-world affine."""
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4):
        raise ValueError(f"expected a 4x4 affine, got shape {affine.shape}")
    volume = abs(float(np.linalg.det(affine[:3, :3]))) / MM3_PER_ML
    if not (np.isfinite(volume) and volume > 0):
        raise ValueError("affine is singular: voxel volume is zero")
    return volume


def label_volumes_ml(labels: np.ndarray, affine, structures: dict[int, str] = SAX_LABELS) -> dict[str, float]:
    """Volume (mL) of each structure ``{value: name}`` (default LVC, LVM, RVC) in a 3D label volume."""
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"expected a 3D label volume (X, Y, Z), got shape {labels.shape}")
    voxel_ml = voxel_volume_ml(affine)
    return {name: int(np.count_nonzero(labels == value)) * voxel_ml for value, name in structures.items()}


def volume_curve_ml(labels_4d: np.ndarray, affine, label: int = LVC) -> np.ndarray:
    """Volume (mL) of one structure in every frame of an (X, Y, Z, T) label array, shape (T,)."""
    labels_4d = np.asarray(labels_4d)
    if labels_4d.ndim != 4:
        raise ValueError(f"expected an (X, Y, Z, T) label array, got shape {labels_4d.shape}")
    counts = np.count_nonzero(labels_4d == label, axis=(0, 1, 2))
    return counts.astype(float) * voxel_volume_ml(affine)
