"""Estimate per-slice in-plane shifts of a SAX stack from its intersections with LAX views.

For every SAX slice and LAX view the two images are sampled along their common line
(through the affines). A slice shifted by d (mm, along its own i and j axes) is sampled
at X + d for every world point X of the line; the LAX views are the fixed reference.
The shifts minimise, jointly over all slices,

    sum_slices mean_lines loss(SAX profile(d_k) - LAX profile)
    + prior * sum_k |d_k|^2 / sigma^2 + drift * |mean_k d_k|^2 / sigma^2

with profiles over several cine frames. `intensity` compares z-scored image profiles
under a Huber loss (robust to contrast and bias differences, label-free), each image
averaged over the other's slab (a SAX pixel holds 8 mm of anatomy along the long axis, a
LAX pixel 6 mm across its plane) and only near the moving heart (cinerecon.align.region);
`labels` compares smoothed one-hot LV/RV label profiles by squared error (usable with
manual or predicted segmentations). A coarse grid search per slice (which avoids local
minima) is refined by L-BFGS on cubic-spline-interpolated images; each slice's estimate
is then weighed against the stack's prior by its uncertainty (`with_prior`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, optimize

from cinerecon.align.lines import Line, intersection_line, stack_centre
from cinerecon.geometry.affine import in_plane_axes, plane_normal

log = logging.getLogger(__name__)

HUBER_DELTA = 1.0
LATTICE_MIN = 64  # offsets on a grid at least this large are sampled separably (_sample_lattice)
LAX_THICKNESS_MM = 6.0


@dataclass
class AlignSettings:
    search_mm: float = 12.0       # grid search half-width
    grid_step_mm: float = 1.0
    radius_mm: float = 45.0       # only line points this close to the heart centre
    prior_weight: float = 0.002
    drift_weight: float = 1.0
    sigma_mm: float = 5.0         # scale of both priors
    max_frames: int = 10
    estimate_lax_offsets: bool = True
    consensus_weight: float = 0.05  # pull of the stack's median shift in later searches
    rounds: int = 1                 # alternations of LAX offsets / SAX grid / refinement
    lax_search_mm: float = 8.0
    # A stack is left as acquired unless its shifts lower the data cost by this fraction
    # (measured: unshifted stacks gain 2-4 %, stacks with 3 mm RMS shifts gain 120-180 %).
    min_relative_gain: float = 0.15
    # Slab model: each image is compared with the other averaged over its own slab.
    sax_thickness_mm: float = 8.0   # UK Biobank SAX: 8 mm slices every 10 mm
    slab_samples: int = 5
    # Compare profiles only this close to moving pixels; larger than the breath-hold shifts
    # (the region is found in the slice as acquired, the profiles are sampled shifted).
    heart_margin_mm: float | None = 10.0
    # Per-slice uncertainty: a Laplace approximation of the data cost times noise_scale,
    # plus a floor (interpolation, model error); calibrated on benchmarks/bench_align.py so
    # that the RMS of per-axis error / sd_mm is ~1 at basal, mid and apical slices alike.
    noise_scale: float = 3.0
    sd_floor_mm: float = 0.05
    min_prior_sd_mm: float = 1.0     # floor of the stack's own shift spread (the prior)
    well_determined_sd_mm: float = 1.0  # slices this well known set the prior's centre and spread


def huber(r: np.ndarray, delta: float = HUBER_DELTA) -> np.ndarray:
    # m (|r| - m / 2) with m = min(|r|, delta): r^2 / 2 within delta, delta (|r| - delta / 2)
    # beyond, bit for bit, in half the passes of np.where over both branches
    a = np.abs(r)
    m = np.minimum(a, delta)
    a -= 0.5 * m
    a *= m
    return a


def _zscore(x: np.ndarray, axes) -> np.ndarray:
    mean = x.mean(axis=axes, keepdims=True)
    std = x.std(axis=axes, keepdims=True)
    return (x - mean) / np.maximum(std, 1e-6)


class AlignmentProblem:
    """Profiles of one subject: SAX (X, Y, Z, F, C) and LAX {view: ((X, Y, F, C), affine)}.

    Unknowns: an in-plane shift per SAX slice and an in-plane offset per LAX view (along
    the LAX direction closest to the SAX normal, and across it). The LAX views are the
    reference, but their own breath-hold displacement makes each SAX level look a few
    mm off in a way per-slice SAX shifts cannot absorb, so it is estimated too. What the
    data cannot see well, a common translation of the whole stack, is held by the drift
    penalty on the stack's mean shift.
    """

    def __init__(self, sax: np.ndarray, sax_affine: np.ndarray, laxes: dict, loss: str,
                 settings: AlignSettings | None = None, regions: np.ndarray | None = None):
        if loss not in ("intensity", "labels"):
            raise ValueError(f"unknown alignment loss {loss!r}")
        self.loss, self.s = loss, settings or AlignSettings()
        self.n_slices = sax.shape[2]
        self.spacing = np.linalg.norm(sax_affine[:3, :2], axis=0)
        normal = sax_affine[:3, 2] / np.linalg.norm(sax_affine[:3, 2])
        centre = stack_centre(sax_affine, sax.shape[:2], self.n_slices)
        self.views = list(laxes)
        self.lines: list[list[Line]] = [[] for _ in range(self.n_slices)]
        self.lax_coeffs, self.lax_step = [], []
        self.sax_coeffs = []   # [view][slice]
        # Images average anatomy over their slab; label maps are drawn on the centre plane.
        samples = self.s.slab_samples if loss == "intensity" else 1
        for vi, (view, (lax, lax_affine)) in enumerate(laxes.items()):
            steps = _lax_steps(lax_affine, normal)
            self.lax_step.append(steps)
            self.lax_coeffs.append(_spline(_slab_average(lax, _slab_steps(sax_affine, lax_affine),
                                                         self.s.sax_thickness_mm, samples)))
            if samples > 1 or not self.sax_coeffs:
                across = _slab_steps(lax_affine, sax_affine)
                self.sax_coeffs.append([_spline(_slab_average(sax[:, :, k], across, lax_slab_mm(lax_affine),
                                                              samples)) for k in range(self.n_slices)])
            else:   # no slab: every view reads the same SAX coefficients
                self.sax_coeffs.append(self.sax_coeffs[0])
            for k in range(self.n_slices):
                line = intersection_line(sax_affine, sax.shape[:2], k, lax_affine, lax.shape[:2],
                                         view, centre, self.s.radius_mm)
                if line is not None and regions is not None:
                    line = line.within(regions[:, :, k])
                if line is None or _sample_coeffs(self.lax_coeffs[vi], line.lax_pixels[None]).std() < 1e-6:
                    continue  # no overlap, or a flat LAX line that carries no information
                line.view_index = vi
                self.lines[k].append(line)
        self.flat = [not np.any(sax[:, :, k].std(axis=(0, 1)) > 1e-6) for k in range(self.n_slices)]
        self.lax_offsets = np.zeros((len(self.views), 2))

    def line_cost(self, k: int, line: Line, shifts_mm: np.ndarray, lax_offset) -> np.ndarray:
        """Cost of one line for G candidate SAX shifts (G, 2) and LAX offsets (G, 2) -> (G,)."""
        shifts_mm = np.atleast_2d(shifts_mm)
        lax_offset = np.broadcast_to(np.asarray(lax_offset, dtype=float), (len(shifts_mm), 2))
        # A grid search moves the SAX slice against one LAX offset (sampled once) and the LAX
        # offset search the LAX view against one SAX shift (see _sample_offsets).
        sax_profile = _sample_offsets(self.sax_coeffs[line.view_index][k], line.sax_pixels,
                                      shifts_mm / self.spacing)                        # (F, C, G, P)
        lax_profile = _sample_offsets(self.lax_coeffs[line.view_index], line.lax_pixels,
                                      lax_offset @ self.lax_step[line.view_index])
        return self._profile_cost(sax_profile, lax_profile)

    def _profile_cost(self, sax_profile: np.ndarray, lax_profile: np.ndarray) -> np.ndarray:
        """(F, C, G, P) profiles -> (G,) costs."""
        if self.loss == "intensity":
            r = _zscore(sax_profile, (0, 3)) - _zscore(lax_profile, (0, 3))
            return huber(r).mean(axis=(0, 1, 3))
        return ((sax_profile - lax_profile) ** 2).mean(axis=(0, 1, 3))

    def _bumped_costs(self, k: int, line: Line, shift_mm: np.ndarray, lax_offset: np.ndarray,
                      steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """line_cost at SAX shifts shift_mm + steps (LAX offset held) and at LAX offsets
        lax_offset + steps (SAX shift held), steps[0] = 0: the same numbers as the two
        line_cost calls, with each image sampled once at its G positions instead of
        twice (the held position is the first row of the other's samples)."""
        v, n = line.view_index, len(steps)
        sax = _sample_offsets(self.sax_coeffs[v][k], line.sax_pixels, (shift_mm + steps) / self.spacing)
        lax = _sample_offsets(self.lax_coeffs[v], line.lax_pixels, (lax_offset + steps) @ self.lax_step[v])
        return (self._profile_cost(sax, np.repeat(lax[:, :, :1], n, axis=2)),
                self._profile_cost(np.repeat(sax[:, :, :1], n, axis=2), lax))

    def slice_cost(self, k: int, shifts_mm: np.ndarray, lax_offsets=None) -> np.ndarray:
        """Data cost of slice k at each of G candidate shifts (G, 2) mm -> (G,)."""
        shifts_mm = np.atleast_2d(shifts_mm)
        if not self.lines[k] or self.flat[k]:
            return np.zeros(len(shifts_mm))
        offsets = self.lax_offsets if lax_offsets is None else lax_offsets
        total = sum(self.line_cost(k, line, shifts_mm, offsets[line.view_index]) for line in self.lines[k])
        return total / len(self.lines[k])

    def prior(self, d: np.ndarray) -> np.ndarray:
        return self.s.prior_weight * (d**2).sum(-1) / self.s.sigma_mm**2

    def _grid(self) -> np.ndarray:
        axis = np.arange(-self.s.search_mm, self.s.search_mm + 1e-9, self.s.grid_step_mm)
        return np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)

    def informative(self) -> list[int]:
        return [k for k in range(self.n_slices) if self.lines[k] and not self.flat[k]]

    def grid_search(self, centre=None, weight: float | None = None) -> np.ndarray:
        """Best shift per slice on a grid (mm): data cost plus a prior around `centre`."""
        grid = self._grid()
        centre = np.zeros(2) if centre is None else centre
        weight = self.s.prior_weight if weight is None else weight
        best = np.tile(centre, (self.n_slices, 1)).astype(float)
        for k in self.informative():
            penalty = weight * ((grid - centre) ** 2).sum(-1) / self.s.sigma_mm**2
            best[k] = grid[np.argmin(self.slice_cost(k, grid) + penalty)]
        return best

    def search_lax_offsets(self, shifts: np.ndarray) -> np.ndarray:
        """Best offset per LAX view on a grid, SAX shifts held fixed."""
        axis = np.arange(-self.s.lax_search_mm, self.s.lax_search_mm + 1e-9, self.s.grid_step_mm)
        candidates = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
        cost = np.zeros((len(self.views), len(candidates)))
        for k in range(self.n_slices):
            if self.flat[k]:
                continue
            for line in self.lines[k]:
                d = np.repeat(shifts[k][None], len(candidates), axis=0)
                cost[line.view_index] += self.line_cost(k, line, d, candidates)
        cost += self.prior(candidates)[None]
        return candidates[np.argmin(cost, axis=1)]

    def refine(self, start: np.ndarray) -> np.ndarray:
        """Joint L-BFGS over SAX shifts and LAX offsets (the drift term couples slices)."""
        h = 1e-3
        steps = np.array([[0.0, 0.0], [h, 0.0], [0.0, h]])
        n, nv = self.n_slices, len(self.views)
        w_drift = self.s.drift_weight / self.s.sigma_mm**2

        def fun(x):
            d, e = x[: 2 * n].reshape(n, 2), x[2 * n:].reshape(nv, 2)
            value, grad, grad_e = 0.0, np.zeros((n, 2)), np.zeros((nv, 2))
            for k in self.informative():
                lines = self.lines[k]
                costs = [self._bumped_costs(k, line, d[k], e[line.view_index], steps) for line in lines]
                c = sum(by_shift for by_shift, _ in costs) / len(lines)   # slice_cost(k, d[k] + steps, e)
                value += c[0]
                grad[k] = (c[1:] - c[0]) / h
                for line, (_, by_offset) in zip(lines, costs):
                    lc = by_offset / len(lines)
                    grad_e[line.view_index] += (lc[1:] - lc[0]) / h
            value += self.prior(d).sum() + self.prior(e).sum()
            grad += 2 * self.s.prior_weight * d / self.s.sigma_mm**2
            grad_e += 2 * self.s.prior_weight * e / self.s.sigma_mm**2
            mean = d.mean(0)
            value += w_drift * (mean**2).sum()
            grad += 2 * w_drift * mean / n
            return value, np.concatenate([grad.ravel(), grad_e.ravel()])

        lim, lim_e = self.s.search_mm + 2, self.s.lax_search_mm + 2
        x0 = np.concatenate([start.ravel(), self.lax_offsets.ravel()])
        result = optimize.minimize(fun, x0, jac=True, method="L-BFGS-B",
                                   bounds=[(-lim, lim)] * (2 * n) + [(-lim_e, lim_e)] * (2 * nv),
                                   options={"maxiter": 300})
        self.lax_offsets = result.x[2 * n:].reshape(nv, 2)
        return result.x[: 2 * n].reshape(n, 2)

    def relative_gain(self, shifts: np.ndarray) -> float:
        """How much `shifts` lower the data cost against no SAX shift (LAX offsets kept)."""
        ks = self.informative()
        if not ks:
            return 0.0
        at_shifts = sum(self.slice_cost(k, shifts[k])[0] for k in ks)
        at_zero = sum(self.slice_cost(k, np.zeros(2))[0] for k in ks)
        return float((at_zero - at_shifts) / max(at_shifts, 1e-12))

    def slice_covariance(self, k: int, d: np.ndarray, h: float = 0.5) -> np.ndarray:
        """(2, 2) covariance (mm^2) of slice k's shift from its data alone, at estimate d.

        Laplace approximation: the inverse curvature of the data cost, scaled by the cost
        left at d (the residual level) over the number of line points that carry it. A
        flat or tiny heart section gives a large covariance, in the direction it is flat.
        """
        if k not in self.informative():
            return np.diag([np.inf, np.inf])
        stencil = h * np.array([[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1], [1, 1], [1, -1], [-1, 1], [-1, -1]])
        c = self.slice_cost(k, d + stencil)
        hxx = (c[1] - 2 * c[0] + c[2]) / h**2
        hyy = (c[3] - 2 * c[0] + c[4]) / h**2
        hxy = (c[5] - c[6] - c[7] + c[8]) / (4 * h**2)
        curvature = np.array([[hxx, hxy], [hxy, hyy]])
        values, vectors = np.linalg.eigh(curvature)
        values = np.maximum(values, 1e-9)   # a direction with no curvature is unknown
        n_points = sum(len(line.points) for line in self.lines[k])
        scale = self.s.noise_scale * max(c[0], 1e-9) / max(n_points, 1)
        return scale * (vectors / values) @ vectors.T + self.s.sd_floor_mm**2 * np.eye(2)

    def with_prior(self, shifts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Combine each slice's data estimate with the stack's prior; (shifts, sd_mm,
        whether data reached the slice).

        The prior is a Gaussian around the stack's median estimate (which carries the LAX
        views' common displacement) with the spread of the well-determined slices. A slice
        the data determine well keeps its estimate; a poorly determined one (a tiny apical
        section, a slice no LAX view reaches) moves towards the median instead of trusting
        a minimum the data barely prefer.
        """
        n = self.n_slices
        covs = np.stack([self.slice_covariance(k, shifts[k]) for k in range(n)])
        sd_data = np.sqrt(np.array([np.linalg.eigvalsh(c).max() if np.isfinite(c).all() else np.inf
                                    for c in covs]))
        good = sd_data <= self.s.well_determined_sd_mm
        pool = good if good.any() else np.isfinite(sd_data)
        if not pool.any():
            return shifts, np.full(n, np.nan), np.zeros(n, dtype=bool)
        centre = np.median(shifts[pool], axis=0)
        # too few slices to measure the stack's spread: a wide prior, not a tight one
        spread = (np.sqrt(((shifts[pool] - centre) ** 2).sum(1).mean() / 2) if pool.sum() > 2
                  else self.s.sigma_mm)
        prior_precision = np.eye(2) / max(spread, self.s.min_prior_sd_mm) ** 2
        out, sd = np.empty_like(shifts), np.empty(n)
        for k in range(n):
            if not np.isfinite(sd_data[k]):
                out[k], sd[k] = centre, 1 / np.sqrt(prior_precision[0, 0])
                continue
            data_precision = np.linalg.inv(covs[k])
            post = np.linalg.inv(data_precision + prior_precision)
            out[k] = centre + post @ data_precision @ (shifts[k] - centre)
            sd[k] = np.sqrt(np.linalg.eigvalsh(post).max())
        return out, sd, np.isfinite(sd_data)

    def solve(self) -> np.ndarray:
        """Grid search, LAX offsets, then a consensus grid search and joint refinement.

        The LAX views' own in-plane displacement moves every slice's estimate by the same
        amount, so the stack's median estimate is a robust centre: the second grid search
        pulls ambiguous slices (apex, base) towards it instead of towards zero.
        """
        shifts = self.grid_search()
        informative = self.informative()
        for _ in range(self.s.rounds):
            if self.s.estimate_lax_offsets and self.views:
                self.lax_offsets = self.search_lax_offsets(shifts)
            if informative:
                centre = np.median(shifts[informative], axis=0)
                shifts = self.grid_search(centre, self.s.consensus_weight)
            shifts = self.refine(shifts)
        return shifts


def _lax_steps(lax_affine: np.ndarray, sax_normal: np.ndarray) -> np.ndarray:
    """(2, 2) LAX pixel steps per mm: row 0 along the LAX in-plane direction closest to
    the SAX normal (through the SAX levels), row 1 across it."""
    u = lax_affine[:3, 0] / np.linalg.norm(lax_affine[:3, 0])
    v = lax_affine[:3, 1] / np.linalg.norm(lax_affine[:3, 1])
    a = np.array([sax_normal @ u, sax_normal @ v])
    a /= max(np.linalg.norm(a), 1e-9)
    b = np.array([-a[1], a[0]])
    return np.stack([a, b]) / np.linalg.norm(lax_affine[:3, :2], axis=0)


def _slab_steps(slab_affine: np.ndarray, image_affine: np.ndarray) -> np.ndarray:
    """Pixel steps in the image plane per mm through another image's slab.

    A point r mm along the slab image's normal projects onto the image plane at
    r * (the normal's in-plane part): the column one pixel of the slab image averages
    lands on that segment of this image (shorter than the slab when the planes tilt).
    """
    normal = plane_normal(slab_affine)
    i, j = in_plane_axes(image_affine)
    return np.array([normal @ i, normal @ j]) / np.linalg.norm(image_affine[:3, :2], axis=0)


def lax_slab_mm(lax_affine: np.ndarray) -> float:
    """A LAX view's slice thickness: the length of its affine's third column (ingest
    writes the thickness there); UK Biobank's 6 mm where a converter wrote something
    implausible for one slice."""
    length = float(np.linalg.norm(lax_affine[:3, 2]))
    return length if 1.0 <= length <= 15.0 else LAX_THICKNESS_MM


def _slab_average(array: np.ndarray, step_px: np.ndarray, thickness_mm: float, samples: int) -> np.ndarray:
    """(X, Y, F, C) image averaged over p + t * step_px for t across a slab (mm): what the
    other image, whose slab this is, sees at p."""
    if samples <= 1 or thickness_mm <= 0:
        return array.astype(np.float64)
    offsets = thickness_mm * ((np.arange(samples) + 0.5) / samples - 0.5)
    array = array.astype(np.float64)
    out = np.zeros(array.shape)
    # one 2D image at a time: shifting the whole array would interpolate along F and C too
    # (4x the work for weights that are 1 at the image itself)
    for image in np.ndindex(array.shape[2:]):
        at = (slice(None), slice(None)) + image
        for t in offsets:
            out[at] += ndimage.shift(array[at], (t * step_px[0], t * step_px[1]), order=1, mode="nearest")
    return out / samples


def _spline(array: np.ndarray) -> np.ndarray:
    """(X, Y, F, C) -> cubic-spline coefficients (F, C, X, Y)."""
    return np.stack([[ndimage.spline_filter(array[:, :, f, c].astype(np.float64))
                      for c in range(array.shape[3])] for f in range(array.shape[2])])


def _sample_offsets(coeffs: np.ndarray, pixels: np.ndarray, offsets_px: np.ndarray) -> np.ndarray:
    """Spline coefficients (F, C, X, Y) sampled at (P, 2) pixels moved by each of (G, 2)
    offsets -> (F, C, G, P): once when every row has the same offset, and separably when
    the offsets form a grid along the image axes (the grid search's)."""
    if (offsets_px == offsets_px[0]).all():  # one offset for every row (np.unique is slow)
        return np.repeat(_sample_coeffs(coeffs, pixels[None] + offsets_px[:1, None]), len(offsets_px), axis=2)
    if len(offsets_px) < LATTICE_MIN:
        return _sample_coeffs(coeffs, pixels[None] + offsets_px[:, None])
    unique, inverse = np.unique(offsets_px, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    ox, oy = np.unique(unique[:, 0]), np.unique(unique[:, 1])
    profiles = None
    if len(unique) == len(ox) * len(oy):
        profiles = _sample_lattice(coeffs, pixels, ox, oy)
    if profiles is None:
        profiles = _sample_coeffs(coeffs, pixels[None] + unique[:, None])
    # the grid search's grid comes sorted: nothing to reorder
    return profiles if np.array_equal(inverse, np.arange(len(unique))) else profiles[:, :, inverse]


def _cubic_weights(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First knot and (..., 4) weights of the cubic B-spline at coordinates x, by the
    formulas of scipy.ndimage (ni_splines.c)."""
    start = np.floor(x)
    t = x - start
    z = 1.0 - t
    w0 = z * z * z / 6.0
    w1 = (t * t * (t - 2.0) * 3.0 + 4.0) / 6.0
    w2 = (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0
    return start.astype(int) - 1, np.stack([w0, w1, w2, 1.0 - w0 - w1 - w2], axis=-1)


def _weight_matrix(x: np.ndarray, size: int):
    """(P, A) coordinates -> (P, A, n) dense weights over a window of n knots starting at
    (P,) per point; None if a support leaves [0, size)."""
    first, w = _cubic_weights(x)
    if first.min() < 0 or first.max() + 3 >= size:
        return None
    n = int((first.max(1) - first.min(1)).max()) + 4
    start = np.minimum(first.min(1), size - n)
    dense = np.zeros(x.shape + (n,))
    np.put_along_axis(dense, (first - start[:, None])[..., None] + np.arange(4), w, axis=2)
    return dense, start


def _sample_lattice(coeffs: np.ndarray, pixels: np.ndarray, ox: np.ndarray, oy: np.ndarray):
    """Spline coefficients (F, C, X, Y) sampled at (P, 2) pixels moved by every (ox[a], oy[b])
    -> (F, C, A * B, P), offsets in row-major order; None where a sample's support leaves
    the image (scipy's edge handling applies there: use _sample_coeffs).

    The spline is a tensor product, so a point's A x B samples are Wx @ window @ Wy.T (the
    coefficients around the point weighed by each axis' 1D weights): two small matrix
    products instead of A x B x 16 lookups. Equal to map_coordinates up to rounding."""
    x = _weight_matrix(pixels[:, :1] + ox, coeffs.shape[2])
    y = _weight_matrix(pixels[:, 1:] + oy, coeffs.shape[3])
    if x is None or y is None:
        return None
    (wx, x0), (wy, y0) = x, y
    rows = (x0[:, None] + np.arange(wx.shape[2]))[:, :, None]
    cols = (y0[:, None] + np.arange(wy.shape[2]))[:, None, :]
    samples = wx @ coeffs[:, :, rows, cols] @ wy.transpose(0, 2, 1)        # (F, C, P, A, B)
    return np.moveaxis(samples, 2, -1).reshape(coeffs.shape[:2] + (-1, len(pixels)))


def _sample_coeffs(coeffs: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Spline coefficients (F, C, X, Y) sampled at (G, P, 2) pixels -> (F, C, G, P)."""
    g, p = pixels.shape[:2]
    coords = pixels.reshape(-1, 2).T
    out = np.empty(coeffs.shape[:2] + (g, p))
    for f in range(coeffs.shape[0]):
        for c in range(coeffs.shape[1]):
            out[f, c] = ndimage.map_coordinates(coeffs[f, c], coords, order=3, prefilter=False,
                                                mode="nearest").reshape(g, p)
    return out


def frame_subset(n_frames: int, max_frames: int) -> np.ndarray:
    """Evenly spread frames (always including ED = 0)."""
    return np.unique(np.linspace(0, n_frames - 1, min(max_frames, n_frames)).round().astype(int))
