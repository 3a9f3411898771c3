"""LAX-intersection evaluation (the papers' Table 2).

A reconstructed SAX-derived label volume is resampled (nearest) onto a LAX plane through
the affines and compared with the LAX labels by 2D Dice, in two protocols:

- `dice` (coverage-masked): only where the SAX stack's reconstruction covers the plane, so
  what the stack never saw (above the base, past the apex) is not scored;
- `dice_full` (the papers'): over the whole LAX label, so every reference pixel the
  reconstruction misses, covered or not, counts as an error (DeepRecon, DMCVR Table 2).

Atria (LAX labels 4, 5) count as background in both.
Only the structures the view's manual labels carry are scored (UK Biobank's LAX labels
are atria only, so they give no LV/RV rows). Rows for a structure the view does not show
(no reference pixels in the covered region) carry Dice NaN, so that "RV in a 2-chamber
view" never scores a vacuous 1.
"""

from __future__ import annotations

import numpy as np

from cinerecon.geometry import plane_pixel_centres, sample_labels, world_to_voxel
from cinerecon.labels import SAX_LABELS
from cinerecon.metrics.overlap import dice


def covered_by(volume_shape, affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Which world points fall inside a voxel grid (voxel centres +- half a voxel)."""
    vox = world_to_voxel(affine, points)
    upper = np.asarray(volume_shape[:3]) - 0.5
    return np.all((vox >= -0.5) & (vox <= upper), axis=-1)


def lax_intersection(volume: np.ndarray, affine: np.ndarray, lax_labels: np.ndarray,
                     lax_affine: np.ndarray):
    """(reconstruction labels on the LAX plane, coverage mask, reference SAX-convention labels)."""
    points = plane_pixel_centres(lax_affine, lax_labels.shape)
    sampled = sample_labels(volume, affine, points, "nearest")
    covered = covered_by(volume.shape, affine, points)
    reference = np.where(np.isin(lax_labels, list(SAX_LABELS)), lax_labels, 0).astype(np.uint8)
    return sampled, covered, reference


def lax_dice_rows(volume, affine, lax_labels, lax_affine, structures=None, **keys) -> list[dict]:
    """One row per SAX structure the view's labels carry (`structures`, {value: name}; by
    default all three): Dice inside the covered region, Dice over the whole label
    (`dice_full`), coverage, pixel count."""
    structures = SAX_LABELS if structures is None else {k: v for k, v in SAX_LABELS.items() if k in structures}
    sampled, covered, reference = lax_intersection(volume, affine, lax_labels, lax_affine)
    foreground = reference > 0
    coverage = float((foreground & covered).sum() / foreground.sum()) if foreground.any() else np.nan
    rows = []
    for label, name in structures.items():
        ref = (reference == label) & covered
        pred = (sampled == label) & covered
        n_ref = int(ref.sum())
        whole = reference == label
        rows.append({**keys, "structure": name, "dice": dice(pred, ref) if n_ref else np.nan,
                     "dice_full": dice(pred, whole) if whole.any() else np.nan,
                     "coverage": coverage, "n_ref_pixels": n_ref})
    return rows
