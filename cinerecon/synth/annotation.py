"""Manual-annotation variability: label images whose contours are displaced smoothly.

Manual labels are not the anatomy's centre plane: annotators draw each contour a little
inside or outside the boundary, differently along it, and the SAX stack and each LAX view
are drawn by different people (DeepRecon's LAX labels come from two cardiologists, the SAX
ones from the UK Biobank annotation study). Each structure of each label image is moved
by a smooth random normal displacement (Gaussian-correlated along the image, RMS sd_mm),
as a level set of its signed distance. Nested structures stay nested where the contours
do not cross: the LV epicardium is drawn before the endocardium, which wins.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cinerecon.labels import LA, LVC, LVM, RA, RVC

# (values the structure covers, value it is drawn with), in drawing order: later wins
STRUCTURES = (((RA,), RA), ((LA,), LA), ((RVC,), RVC), ((LVC, LVM), LVM), ((LVC,), LVC))
CORRELATION_MM = 12.0


def annotate(labels: np.ndarray, pixel_mm: float, sd_mm: float, rng: np.random.Generator) -> np.ndarray:
    """A 2D label image as an annotator would draw it: each structure's contour displaced
    along its normal by a smooth field of RMS sd_mm. sd_mm 0 returns the labels unchanged."""
    if sd_mm <= 0 or not labels.any():
        return labels
    margin = int(np.ceil(4 * sd_mm / pixel_mm)) + 2
    out = np.zeros_like(labels)
    for values, value in STRUCTURES:
        if not (labels == value).any():
            continue  # e.g. no myocardium: the epicardium is not drawn around a bare cavity
        mask = np.isin(labels, values)
        box = _box(mask, margin)
        inside = mask[box]
        distance_mm = (ndimage.distance_transform_edt(~inside) - ndimage.distance_transform_edt(inside)) * pixel_mm
        region = out[box]
        region[distance_mm < sd_mm * _smooth_field(rng, inside.shape, CORRELATION_MM / pixel_mm)] = value
    return out


def _box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + margin + 1, mask.shape)
    return tuple(slice(a, b) for a, b in zip(lo, hi))


def _smooth_field(rng, shape, sigma_px: float) -> np.ndarray:
    """Gaussian-correlated noise of unit RMS."""
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma_px, mode="wrap")
    return field / max(float(np.sqrt((field**2).mean())), 1e-12)
