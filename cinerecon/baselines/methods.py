"""Slice-to-slice label interpolation: nearest neighbour, linear, shape-based (SDF), CPD.

Each method answers one question: given acquired SAX label slices j and j + 1, what are
the labels at fractions t in (0, 1) between them? The grid module decides where those
fractions are and how the ends (base, apex) are extrapolated, identically for all.

Nested structures keep the LV myocardium a ring: the methods that move shapes (SDF, CPD)
interpolate the LV endocardium {LVC}, the LV epicardium {LVC, LVM} and the RV {RVC}
and rebuild the labels as LVM = epi - endo, with the LV winning any overlap with the RV.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cinerecon.labels import LVC, LVM, RVC

STRUCTURES = {"endo": (LVC,), "epi": (LVC, LVM), "rv": (RVC,)}
SAX_CLASSES = (0, LVC, LVM, RVC)


def compose_labels(endo: np.ndarray, epi: np.ndarray, rv: np.ndarray) -> np.ndarray:
    """Labels from nested structure masks: RV, then epicardium (LVM), then endocardium."""
    out = np.zeros(endo.shape, dtype=np.uint8)
    out[rv] = RVC
    out[epi] = LVM
    out[endo] = LVC
    return out


def structure_masks(labels: np.ndarray) -> dict:
    return {name: np.isin(labels, values) for name, values in STRUCTURES.items()}


class NearestNeighbour:
    """The papers' "Original": each fine slice copies the nearest acquired slice."""

    def __init__(self, stack: np.ndarray, spacing_xy):
        self.stack = stack

    def between(self, j: int, ts: np.ndarray) -> np.ndarray:
        a, b = self.stack[:, :, j], self.stack[:, :, j + 1]
        return np.stack([a if t < 0.5 else b for t in ts])


class LinearOneHot:
    """Per-label probabilities interpolated linearly between slices, then argmax.

    Hard manual labels are first softened in-plane (Gaussian, 1 pixel) into probability
    maps; with predicted probability maps this is the usual label interpolation.
    """

    def __init__(self, stack: np.ndarray, spacing_xy, sigma_px: float = 1.0):
        onehot = np.stack([(stack == c).astype(np.float32) for c in SAX_CLASSES])
        self.prob = ndimage.gaussian_filter(onehot, sigma=(0, sigma_px, sigma_px, 0))

    def between(self, j: int, ts: np.ndarray) -> np.ndarray:
        pa, pb = self.prob[..., j], self.prob[..., j + 1]
        out = [np.asarray(SAX_CLASSES, np.uint8)[np.argmax((1 - t) * pa + t * pb, axis=0)]
               for t in ts]
        return np.stack(out)


def signed_distance(mask: np.ndarray, spacing_xy) -> np.ndarray:
    """Signed distance (mm): negative inside, positive outside, |d| >= one pixel at the edge.

    The mask is padded with background first: scipy's transform measures distance to
    the nearest zero, and an all-foreground slice has none, so the image border counts
    as outside (the structure is cut by the field of view, not infinite).
    """
    padded = np.pad(mask, 1)
    inside = ndimage.distance_transform_edt(padded, sampling=spacing_xy)
    outside = ndimage.distance_transform_edt(~padded, sampling=spacing_xy)
    return (outside - inside)[1:-1, 1:-1]


class ShapeBased:
    """Shape-based interpolation of per-structure signed distance maps.

    - A structure absent from one slice shrinks to nothing there: the missing map is the
      present one raised by its maximal inside depth, so the zero level erodes evenly.
    - Sections that do not overlap their neighbour would vanish half-way under plain SDF
      blending; they are moved along the line joining their centroids instead
      (centroid-aligned interpolation), so the structure travels rather than disappears.
    """

    def __init__(self, stack: np.ndarray, spacing_xy):
        self.spacing = tuple(spacing_xy)
        self.masks = [structure_masks(stack[:, :, k]) for k in range(stack.shape[2])]
        self.sdf = [{n: signed_distance(m, self.spacing) if m.any() else None
                     for n, m in masks.items()} for masks in self.masks]

    def _structure(self, name: str, j: int, ts) -> np.ndarray:
        ma, mb = self.masks[j][name], self.masks[j + 1][name]
        da, db = self.sdf[j][name], self.sdf[j + 1][name]
        shape = (len(ts),) + ma.shape
        if da is None and db is None:
            return np.zeros(shape, dtype=bool)
        if db is None:
            db = da + (-da.min() + min(self.spacing))
        elif da is None:
            da = db + (-db.min() + min(self.spacing))
        elif not (ma & mb).any():
            return self._travel(ma, mb, da, db, ts)
        return np.stack([(1 - t) * da + t * db < 0 for t in ts])

    def _travel(self, ma, mb, da, db, ts) -> np.ndarray:
        move = np.array(ndimage.center_of_mass(mb)) - np.array(ndimage.center_of_mass(ma))
        out = []
        for t in ts:
            sa = ndimage.shift(da, t * move, order=1, mode="nearest")
            sb = ndimage.shift(db, -(1 - t) * move, order=1, mode="nearest")
            out.append((1 - t) * sa + t * sb < 0)
        return np.stack(out)

    def between(self, j: int, ts: np.ndarray) -> np.ndarray:
        parts = {name: self._structure(name, j, ts) for name in STRUCTURES}
        return np.stack([compose_labels(parts["endo"][i], parts["epi"][i], parts["rv"][i])
                         for i in range(len(ts))])


METHODS = {"nn": NearestNeighbour, "linear": LinearOneHot, "sdf": ShapeBased}


def interpolate_image(stack: np.ndarray, j: int, ts: np.ndarray) -> np.ndarray:
    """Linear image interpolation between slices j and j + 1 (fractions ts)."""
    a, b = stack[:, :, j].astype(np.float32), stack[:, :, j + 1].astype(np.float32)
    return np.stack([(1 - t) * a + t * b for t in ts])
