"""Volumetric overlap metrics on boolean masks of any dimension.

Edge cases follow the single table in :mod:`cinerecon.metrics`.
"""

from __future__ import annotations

import numpy as np


def as_mask_pair(pred, ref) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as boolean arrays of one shape; a shape mismatch is an error, not a broadcast."""
    pred = np.asarray(pred).astype(bool, copy=False)
    ref = np.asarray(ref).astype(bool, copy=False)
    if pred.shape != ref.shape:
        raise ValueError(f"mask shapes differ: pred {pred.shape} vs ref {ref.shape}")
    return pred, ref


def _counts(pred, ref) -> tuple[int, int, int]:
    pred, ref = as_mask_pair(pred, ref)
    inter = int(np.count_nonzero(pred & ref))
    return inter, int(np.count_nonzero(pred)), int(np.count_nonzero(ref))


def dice(pred, ref) -> float:
    """Dice = 2|A∩B| / (|A| + |B|); 1.0 when both masks are empty."""
    inter, n_pred, n_ref = _counts(pred, ref)
    if n_pred + n_ref == 0:
        return 1.0
    return 2.0 * inter / (n_pred + n_ref)


def voe(pred, ref) -> float:
    """Volumetric overlap error = 1 - |A∩B| / |A∪B| as a fraction (tables scale to % if a paper does)."""
    inter, n_pred, n_ref = _counts(pred, ref)
    union = n_pred + n_ref - inter
    if union == 0:
        return 0.0
    return 1.0 - inter / union
