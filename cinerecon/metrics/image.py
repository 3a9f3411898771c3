"""Image-similarity metrics for 2D slices and stacks of them.

Arrays follow the (X, Y, Z, T) convention: axes 0 and 1 are the image plane and
any trailing axes index slices/frames. ``data_range`` is always explicit because
model images live in [-1, 1] (range 2), where guessing from the dtype is wrong.

- PSNR is computed from the mean squared error over the whole array (all slices
  pooled); identical images give +inf.
- SSIM of a stack is the mean of the per-slice 2D SSIM (skimage's defaults: 7x7
  uniform window, unless overridden through ``**ssim_kwargs``), so it does not
  mix the in-plane and the much coarser through-plane resolution.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity


def _as_image_pair(pred, ref) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if pred.shape != ref.shape:
        raise ValueError(f"image shapes differ: pred {pred.shape} vs ref {ref.shape}")
    if pred.ndim < 2:
        raise ValueError(f"expected a 2D image or a stack of them, got shape {pred.shape}")
    return pred, ref


def _check_range(data_range: float) -> float:
    data_range = float(data_range)
    if not (np.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be positive, got {data_range}")
    return data_range


def psnr(pred, ref, data_range: float) -> float:
    """Peak signal-to-noise ratio (dB) = 10 log10(data_range^2 / MSE) over the whole array."""
    pred, ref = _as_image_pair(pred, ref)
    data_range = _check_range(data_range)
    mse = float(np.mean((pred - ref) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def ssim(pred, ref, data_range: float, **ssim_kwargs) -> float:
    """Structural similarity: 2D SSIM of an image, or the mean per-slice 2D SSIM of a stack."""
    pred, ref = _as_image_pair(pred, ref)
    data_range = _check_range(data_range)
    shape2d = pred.shape[:2]
    pred_slices = pred.reshape(*shape2d, -1)
    ref_slices = ref.reshape(*shape2d, -1)
    if pred_slices.shape[-1] == 0:
        raise ValueError(f"stack of shape {pred.shape} has no slices")
    values = [
        structural_similarity(ref_slices[..., k], pred_slices[..., k], data_range=data_range, **ssim_kwargs)
        for k in range(pred_slices.shape[-1])
    ]
    return float(np.mean(values))
