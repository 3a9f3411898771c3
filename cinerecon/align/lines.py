"""Lines where a SAX slice plane meets a LAX plane, sampled inside both fields of view."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cinerecon.geometry import apply_affine, plane_normal, slice_affine, world_to_voxel


MIN_POINTS = 8   # a shorter stretch of line carries too little profile to compare


@dataclass
class Line:
    """One SAX-slice / LAX-view intersection, sampled every `step_mm` along it."""

    slice_index: int
    view: str
    points: np.ndarray       # (P, 3) world positions
    sax_pixels: np.ndarray   # (P, 2) fractional (i, j) pixel positions in the SAX slice
    lax_pixels: np.ndarray   # (P, 2) fractional (i, j) pixel positions in the LAX view
    direction: np.ndarray    # (3,) unit vector along the line

    def within(self, mask: np.ndarray, min_points: int = MIN_POINTS) -> "Line | None":
        """The part of the line whose SAX pixels fall inside a (X, Y) mask; None if too short."""
        px = np.clip(np.round(self.sax_pixels).astype(int), 0, np.asarray(mask.shape) - 1)
        keep = mask[px[:, 0], px[:, 1]]
        if keep.sum() < min_points:
            return None
        return Line(self.slice_index, self.view, self.points[keep], self.sax_pixels[keep],
                    self.lax_pixels[keep], self.direction)


def plane_intersection(affine_a: np.ndarray, affine_b: np.ndarray):
    """(point, unit direction) of the line shared by two slice planes; None if parallel."""
    na, nb = plane_normal(affine_a), plane_normal(affine_b)
    direction = np.cross(na, nb)
    norm = np.linalg.norm(direction)
    if norm < 1e-3:
        return None
    direction /= norm
    # The point on both planes closest to the origin (3 equations, exact solution).
    system = np.stack([na, nb, direction])
    rhs = np.array([na @ affine_a[:3, 3], nb @ affine_b[:3, 3], 0.0])
    return np.linalg.solve(system, rhs), direction


def _inside(pixels: np.ndarray, shape, margin: float) -> np.ndarray:
    return np.all((pixels >= margin) & (pixels <= np.asarray(shape) - 1 - margin), axis=1)


def intersection_line(sax_affine, sax_shape, k: int, lax_affine, lax_shape, view: str,
                      centre=None, radius_mm: float = np.inf, step_mm: float = 1.0,
                      margin_px: float = 2.0) -> Line | None:
    """Sample the SAX slice k / LAX view intersection where both images have pixels.

    `centre`/`radius_mm` keep only points within that in-plane distance of the heart
    centre, so static surroundings (chest wall, lungs) do not dominate the profile.
    """
    slice_aff = slice_affine(sax_affine, k)
    line = plane_intersection(slice_aff, lax_affine)
    if line is None:
        return None
    point, direction = line
    reach = np.linalg.norm(np.asarray(sax_shape) * np.linalg.norm(sax_affine[:3, :2], axis=0))
    t = np.arange(-reach, reach, step_mm)
    points = point + t[:, None] * direction
    sax_px = world_to_voxel(slice_aff, points)[:, :2]
    lax_px = world_to_voxel(lax_affine, points)[:, :2]
    keep = _inside(sax_px, sax_shape, margin_px) & _inside(lax_px, lax_shape, margin_px)
    if centre is not None:
        normal = plane_normal(slice_aff)
        rel = points - centre
        inplane = rel - np.outer(rel @ normal, normal)
        keep &= np.linalg.norm(inplane, axis=1) <= radius_mm
    if keep.sum() < MIN_POINTS:
        return None
    return Line(k, view, points[keep], sax_px[keep], lax_px[keep], direction)


def stack_centre(sax_affine, sax_shape, n_slices: int) -> np.ndarray:
    """World position of the stack's central pixel column at mid-stack (the crop centre)."""
    return apply_affine(sax_affine, [(sax_shape[0] - 1) / 2, (sax_shape[1] - 1) / 2, (n_slices - 1) / 2])
