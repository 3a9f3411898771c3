"""Coherent Point Drift (pycpd) contour interpolation between adjacent SAX slices.

For each structure (LV endocardium, LV epicardium, RV) the largest contour of each slice
is resampled to a fixed number of points; a deformable CPD registration in each
direction gives point correspondences, and the contour at fraction t moves every point
by t of its displacement (from slice j for t < 0.5, from slice j + 1 otherwise, so both
acquired contours are reproduced exactly). The moved polygon is rasterised.

Appear / vanish: a structure missing from one slice shrinks towards its centroid in the
other, reaching zero size at the slice where it is missing.
Split: only the largest component is registered; the smaller components are carried by
nearest-neighbour stacking from their own slice (they fill the half-gap next to it).
"""

from __future__ import annotations

import numpy as np
from pycpd import DeformableRegistration
from scipy import ndimage
from skimage.draw import polygon as draw_polygon
from skimage.measure import find_contours

from cinerecon.baselines.methods import STRUCTURES, compose_labels, structure_masks

N_POINTS = 64


def largest_component(mask: np.ndarray):
    """(largest connected component, remainder) of a 2D mask."""
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask, np.zeros_like(mask)
    sizes = ndimage.sum(mask, labels, range(1, n + 1))
    keep = labels == (1 + int(np.argmax(sizes)))
    return keep, mask & ~keep


def contour_points(mask: np.ndarray, n_points: int = N_POINTS) -> np.ndarray:
    """Outer contour of a single-component mask, resampled evenly by arc length (pixels)."""
    contours = find_contours(np.pad(mask, 1).astype(float), 0.5)
    contour = max(contours, key=len) - 1.0
    if not np.allclose(contour[0], contour[-1]):
        contour = np.vstack([contour, contour[:1]])
    seg = np.linalg.norm(np.diff(contour, axis=0), axis=1)
    arc = np.concatenate([[0], np.cumsum(seg)])
    targets = np.linspace(0, arc[-1], n_points, endpoint=False)
    return np.column_stack([np.interp(targets, arc, contour[:, k]) for k in range(2)])


def register(source: np.ndarray, target: np.ndarray, spacing_xy) -> np.ndarray:
    """Where each source point lands on the target (deformable CPD, in pixels)."""
    scale = np.asarray(spacing_xy, dtype=float)
    src, tgt = source * scale, target * scale
    shift = tgt.mean(0) - src.mean(0)
    norm = max(np.sqrt(((tgt - tgt.mean(0)) ** 2).sum(1).mean()), 1e-6)
    reg = DeformableRegistration(X=(tgt - tgt.mean(0)) / norm,
                                 Y=(src + shift - tgt.mean(0)) / norm,
                                 alpha=2.0, beta=2.0, max_iterations=100, tolerance=1e-5)
    moved, _ = reg.register()
    return (moved * norm + tgt.mean(0)) / scale


def rasterise(points: np.ndarray, shape) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    rr, cc = draw_polygon(points[:, 0], points[:, 1], shape)
    mask[rr, cc] = True
    return mask


class CoherentPointDrift:
    def __init__(self, stack: np.ndarray, spacing_xy, n_points: int = N_POINTS):
        self.spacing = tuple(spacing_xy)
        self.shape = stack.shape[:2]
        self.n_points = n_points
        self.parts = []
        for k in range(stack.shape[2]):
            per = {}
            for name, mask in structure_masks(stack[:, :, k]).items():
                main, rest = largest_component(mask)
                per[name] = (contour_points(main, n_points) if main.any() else None, rest)
            self.parts.append(per)

    def _structure(self, name: str, j: int, ts) -> np.ndarray:
        (ca, rest_a), (cb, rest_b) = self.parts[j][name], self.parts[j + 1][name]
        out = np.zeros((len(ts),) + self.shape, dtype=bool)
        if ca is not None and cb is not None:
            a_to_b, b_to_a = register(ca, cb, self.spacing), register(cb, ca, self.spacing)
        for i, t in enumerate(ts):
            if ca is not None and cb is not None:
                pts = ca + t * (a_to_b - ca) if t < 0.5 else cb + (1 - t) * (b_to_a - cb)
            elif ca is not None:
                pts = ca.mean(0) + (1 - t) * (ca - ca.mean(0))
            elif cb is not None:
                pts = cb.mean(0) + t * (cb - cb.mean(0))
            else:
                pts = None
            if pts is not None:
                out[i] = rasterise(pts, self.shape)
            out[i] |= rest_a if t < 0.5 else rest_b
        return out

    def between(self, j: int, ts: np.ndarray) -> np.ndarray:
        parts = {name: self._structure(name, j, ts) for name in STRUCTURES}
        return np.stack([compose_labels(parts["endo"][i], parts["epi"][i], parts["rv"][i])
                         for i in range(len(ts))])
