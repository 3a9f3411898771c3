"""Segmentation and image-quality metrics.

Overlap (:mod:`.overlap`): Dice and volumetric overlap error (VOE, a fraction) on
boolean masks of any dimension. Surface distances (:mod:`.surface`): Hausdorff,
HD95, ASD and ASSD in mm with per-axis spacing; the surface definition, the HD95
definition (95th percentile of the *pooled* directed distances, as MedPy) and the
ASSD definition (mean of the pooled distances) are documented there. Image
quality (:mod:`.image`): PSNR over the whole array and SSIM as the mean per-slice
2D SSIM. ``per_label_metrics`` gives all six segmentation metrics per structure.

Empty-mask conventions (the one place they are defined; tests cover each):

=====================  ======  =====  ===========================
case                   Dice    VOE    HD / HD95 / ASD / ASSD (mm)
=====================  ======  =====  ===========================
both masks empty       1.0     0.0    0.0
exactly one empty      0.0     1.0    NaN
both non-empty         value   value  value
=====================  ======  =====  ===========================

A structure missing from one side has no surface to measure, so its distances
are NaN rather than inf: cohort tables aggregate with nan-aware means
(``np.nanmean`` / pandas' default ``skipna``) and report how many subjects were
NaN, instead of one missing structure turning the whole mean into inf.
"""

from .image import psnr, ssim
from .overlap import dice, voe
from .per_label import METRIC_NAMES, per_label_metrics
from .spacing import spacing_from_affine
from .surface import asd, assd, hausdorff, hd95, surface, surface_distances, surface_metrics

__all__ = [
    "METRIC_NAMES",
    "asd",
    "assd",
    "dice",
    "hausdorff",
    "hd95",
    "per_label_metrics",
    "psnr",
    "spacing_from_affine",
    "ssim",
    "surface",
    "surface_distances",
    "surface_metrics",
    "voe",
]
