"""A parametric beating heart with analytic volumes.

Geometry lives in a heart frame: origin at the centre of the LV base plane at ED, axes
(u, v, s) = (towards the RV, e_rv x e_long, base -> apex along the LV long axis).

- LV blood pool: half prolate ellipsoid (radius r, length L) below the base plane.
- LV myocardium: the same shape grown by the wall thickness w (apex included), minus
  the blood pool. Myocardial volume is conserved over the cycle, so w thickens in systole.
- RV blood pool: a half ellipsoid offset towards the RV, minus the LV epicardium: a
  crescent that wraps the septum and is open at the base, shorter than the LV.
- LA, RA: ellipsoids above the base plane; aorta: a tube leaving the LV base upwards.
The base plane descends towards the fixed apex in systole (longitudinal shortening).

All volumes used as truth come from these closed-form shapes (LV) or from a quadrature
of the analytic cross-sections (RV), never from rendered voxels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import brentq

from cinerecon.labels import LA, LVC, LVM, RA, RVC

# Tissue codes used for rendering; 1-5 coincide with the LAX label convention.
AIR, BODY, FAT, LUNG, LIVER, RV_WALL, AORTA, SPINE = 0, 8, 9, 10, 11, 12, 13, 14
HALF_ELLIPSOID = 2.0 / 3.0 * np.pi
APEX_WALL_FRACTION = 0.7  # the apex is thinner than the free wall
RV_WALL_MM, FAT_MM, AORTA_LENGTH_MM = 3.0, 2.5, 80.0


@dataclass(frozen=True)
class HeartParams:
    """Everything that makes one synthetic subject's heart (mm, mL, %, frames)."""

    lv_edv_ml: float
    lv_aspect: float          # L / r of the LV blood pool at ED
    wall_mm: float            # LV wall thickness at ED
    lv_ef: float              # % (target of the analytic volume curve)
    base_descent_mm: float    # base plane descent at ES
    rv_scale: float           # RV cross-section size relative to LV epicardial radius
    rv_ef: float              # % (target used to set RV contraction)
    rv_length_frac: float     # RV length relative to LV length
    rv_septal_frac: float     # RV ellipse septal edge, as a fraction of the epi radius
    la_radius_mm: float
    ra_radius_mm: float
    aorta_radius_mm: float
    n_frames: int
    es_frame: int
    origin: tuple             # world position of the LV base centre at ED
    e_long: tuple             # unit vector base -> apex
    e_rv: tuple               # unit vector towards the RV, orthogonal to e_long
    aorta_angle_deg: float    # direction of the aortic valve from the LV axis, from e_rv

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def contraction_curve(n_frames: int, es_frame: int) -> np.ndarray:
    """f(frame) in [0, 1]: 0 at ED (frame 0), exactly 1 only at the ES frame.

    Systole is a half cosine; diastole has rapid filling, diastasis and an atrial kick.
    """
    phase = np.arange(n_frames) / n_frames
    phase_es = es_frame / n_frames
    f = np.empty(n_frames)
    sys = phase <= phase_es
    f[sys] = 0.5 * (1 - np.cos(np.pi * phase[sys] / phase_es))
    u = (phase[~sys] - phase_es) / (1 - phase_es)
    f[~sys] = 0.2 * (1 - _smoothstep((u - 0.75) / 0.25)) + 0.8 * (1 - _smoothstep(u / 0.35))
    return f


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def sample_params(rng: np.random.Generator, n_frames: int = 50,
                  impaired_fraction: float = 0.2, lv_edv_range=(100, 200), lv_aspect_range=(2.8, 3.5),
                  wall_range=(6, 12)) -> HeartParams:
    """Draw a plausible UK-Biobank-like heart (population variation, some impaired).

    The ranges (ED volume in mL, length/radius, wall in mm) widen or move the population,
    e.g. rounder or thinner-walled hearts than the default's.
    """
    impaired = rng.random() < impaired_fraction
    lv_ef = rng.uniform(25, 40) if impaired else rng.uniform(50, 70)
    lv_edv = rng.uniform(*lv_edv_range) * (1.1 if impaired else 1.0)
    aspect = rng.uniform(*lv_aspect_range)
    r = (lv_edv * 1000 / (HALF_ELLIPSOID * aspect)) ** (1 / 3)
    length = aspect * r
    descent = length * (rng.uniform(0.04, 0.08) if impaired else rng.uniform(0.11, 0.16))
    es_frame = int(round(n_frames * rng.uniform(0.32, 0.38)))

    # Orientation: apex points left, anterior and inferior (RAS: -x, +y, -z).
    e_long = _unit(np.array([-0.62, 0.55, -0.56]) + rng.normal(0, 0.08, 3))
    rv_guess = np.array([0.65, 0.65, 0.2]) + rng.normal(0, 0.08, 3)
    e_rv = _unit(rv_guess - rv_guess.dot(e_long) * e_long)
    mid = np.array([-20.0, 30.0, 0.0]) + rng.normal(0, 8, 3)
    origin = mid - e_long * length * 0.5

    return HeartParams(
        lv_edv_ml=float(lv_edv),
        lv_aspect=float(aspect),
        wall_mm=float(rng.uniform(*wall_range)),
        lv_ef=float(lv_ef),
        base_descent_mm=float(descent),
        rv_scale=float(rng.uniform(0.75, 0.95)),
        rv_ef=float(np.clip(lv_ef + rng.normal(0, 4), 20, 72)),
        rv_length_frac=float(rng.uniform(0.75, 0.85)),
        rv_septal_frac=float(rng.uniform(0.15, 0.3)),
        la_radius_mm=float(rng.uniform(17, 23)),
        ra_radius_mm=float(rng.uniform(17, 23)),
        aorta_radius_mm=float(rng.uniform(11, 15)),
        n_frames=int(n_frames),
        es_frame=es_frame,
        origin=tuple(float(x) for x in origin),
        e_long=tuple(float(x) for x in e_long),
        e_rv=tuple(float(x) for x in e_rv),
        aorta_angle_deg=float(rng.uniform(-60, -40)),
    )


def _unit(v):
    return v / np.linalg.norm(v)


@dataclass(frozen=True)
class FrameShape:
    """The heart's dimensions in one frame (heart-frame mm)."""

    base: float       # s position of the base plane
    r: float          # LV blood pool radius
    length: float     # LV blood pool length (base plane to endocardial apex)
    wall: float       # LV wall thickness
    rv_a: float       # RV ellipse semi-axis along u at the base
    rv_c: float       # RV ellipse semi-axis along v at the base
    rv_septal: float  # RV ellipse septal edge, as a fraction of the local epi radius
    rv_length: float
    atrial_scale: float

    def epi_radius_at(self, s):
        """LV epicardial radius at depth s below the base plane (0 beyond the apex)."""
        return self.epi_r * np.sqrt(np.maximum(1 - (s / self.epi_length) ** 2, 0.0))

    def rv_section_at(self, s, grow: float = 0.0):
        """RV ellipse (centre offset d, semi-axes a, c) at depth s; grow inflates it (mm).

        The centre follows the epicardium so the septal edge stays inside the LV at every
        level: the crescent wraps the septum from the base to the RV apex.
        """
        k = np.sqrt(np.maximum(1 - (s / self.rv_length) ** 2, 0.0))
        d = self.rv_a * k + self.rv_septal * self.epi_radius_at(s)
        if grow:
            k = np.sqrt(np.maximum(1 - (s / (self.rv_length + grow)) ** 2, 0.0))
        return d, (self.rv_a + grow) * k, (self.rv_c + grow) * k

    @property
    def epi_r(self) -> float:
        return self.r + self.wall

    @property
    def epi_length(self) -> float:
        return self.length + APEX_WALL_FRACTION * self.wall


class HeartModel:
    """Evaluates tissue labels at world points and the analytic volumes per frame."""

    def __init__(self, params: HeartParams):
        self.p = params
        e_long = np.asarray(params.e_long)
        e_rv = np.asarray(params.e_rv)
        self.rotation = np.stack([e_rv, np.cross(e_long, e_rv), e_long], axis=1)
        self.origin = np.asarray(params.origin)
        self.f = contraction_curve(params.n_frames, params.es_frame)
        self.frames = [self._frame_shape(fi) for fi in self.f]
        ang = np.deg2rad(params.aorta_angle_deg)
        self.aorta_dir_uv = np.array([np.cos(ang), np.sin(ang)])

    # ---- shapes over time -------------------------------------------------------------
    def _frame_shape(self, f: float) -> FrameShape:
        p = self.p
        r_ed = (p.lv_edv_ml * 1000 / (HALF_ELLIPSOID * p.lv_aspect)) ** (1 / 3)
        len_ed = p.lv_aspect * r_ed
        vol_ed = HALF_ELLIPSOID * r_ed**2 * len_ed
        vol = vol_ed * (1 - p.lv_ef / 100 * f)
        base = p.base_descent_mm * f
        length = len_ed - base
        r = np.sqrt(vol / (HALF_ELLIPSOID * length))
        def myo_volume(r_, length_, w):
            return HALF_ELLIPSOID * ((r_ + w) ** 2 * (length_ + APEX_WALL_FRACTION * w) - r_**2 * length_)

        myo = myo_volume(r_ed, len_ed, p.wall_mm)
        wall = brentq(lambda w: myo_volume(r, length, w) - myo, 0.0, 100.0, xtol=1e-12)
        # RV: cross-section shrinks by g and shortens with the base; g hits rv_ef roughly.
        rv_len_ed = p.rv_length_frac * len_ed
        rv_length = rv_len_ed - base
        g_es = np.sqrt((1 - p.rv_ef / 100) * rv_len_ed / (rv_len_ed - p.base_descent_mm))
        g = 1 - (1 - g_es) * f
        epi_ed = r_ed + p.wall_mm
        return FrameShape(base=base, r=r, length=length, wall=wall,
                          rv_a=0.9 * p.rv_scale * epi_ed * g, rv_c=1.5 * p.rv_scale * epi_ed * g,
                          rv_septal=p.rv_septal_frac, rv_length=rv_length,
                          atrial_scale=1 + 0.12 * f)

    def to_heart_frame(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> heart-frame (u, v, s)."""
        return (np.asarray(points) - self.origin) @ self.rotation

    def to_world(self, uvs: np.ndarray) -> np.ndarray:
        return np.asarray(uvs) @ self.rotation.T + self.origin

    # ---- labels ----------------------------------------------------------------------
    def tissue(self, points: np.ndarray, frame: int) -> np.ndarray:
        """Tissue code (uint8) of the heart at world points (..., 3); AIR where none."""
        return self.tissue_local(self.to_heart_frame(points), frame)

    def tissue_local(self, q: np.ndarray, frame: int) -> np.ndarray:
        """Tissue code at heart-frame points (..., 3). Later assignments win overlaps."""
        fs = self.frames[frame]
        shape = q.shape[:-1]
        q = q.reshape(-1, 3)
        out = np.zeros(len(q), dtype=np.uint8)
        s_all = q[:, 2] - fs.base
        below = np.flatnonzero(s_all >= -3)
        above = np.flatnonzero(s_all < 0)
        out[above] = self._above_base(q[above, 0], q[above, 1], s_all[above], fs)
        u, v, s = q[below, 0], q[below, 1], s_all[below]
        sub = out[below]
        ventricle = s >= 0
        rho2 = u * u + v * v
        epi_r = fs.epi_radius_at(s)
        epi = ventricle & (rho2 <= epi_r**2) & (s <= fs.epi_length)
        endo = ventricle & (rho2 / fs.r**2 + (s / fs.length) ** 2 <= 1)
        d, a, c = fs.rv_section_at(s)
        rv = ventricle & (s <= fs.rv_length) & (((u - d) / np.maximum(a, 1e-9)) ** 2
                                                 + (v / np.maximum(c, 1e-9)) ** 2 <= 1)
        d, a, c = fs.rv_section_at(s, grow=RV_WALL_MM)
        rv_outer = ventricle & (((u - d) / np.maximum(a, 1e-9)) ** 2
                                + (v / np.maximum(c, 1e-9)) ** 2 <= 1)
        # Epicardial fat: a thin layer around both ventricles (bright in bSSFP).
        fat = (rho2 <= (fs.epi_radius_at(np.maximum(s, 0)) + FAT_MM) ** 2) | rv_outer
        fat &= (s <= fs.epi_length + FAT_MM) & (sub == AIR)
        sub[fat] = FAT
        sub[rv_outer & ~epi] = RV_WALL
        sub[rv & ~epi] = RVC
        sub[epi] = LVM
        sub[endo] = LVC
        out[below] = sub
        return out.reshape(shape)

    def _above_base(self, u, v, s, fs: FrameShape) -> np.ndarray:
        """Atria and aortic root, all above the base plane (s < 0)."""
        out = np.zeros(len(u), dtype=np.uint8)
        la_r = self.p.la_radius_mm * fs.atrial_scale
        ra_r = self.p.ra_radius_mm * fs.atrial_scale
        la_centre = (-0.2 * fs.epi_r, 0.3 * fs.epi_r, -0.9 * 1.4 * la_r)
        ra_centre = (fs.rv_section_at(0.0)[0] + 0.1 * fs.rv_a, -0.2 * fs.rv_c, -0.9 * 1.3 * ra_r)
        la = _in_ellipsoid(u, v, s, la_centre, (la_r, 1.1 * la_r, 1.4 * la_r))
        ra = _in_ellipsoid(u, v, s, ra_centre, (ra_r, 1.1 * ra_r, 1.3 * ra_r))
        valve = np.array([*(0.5 * fs.r * self.aorta_dir_uv), 0.0])
        axis = np.array([*(0.35 * self.aorta_dir_uv), -1.0])
        axis /= np.linalg.norm(axis)
        rel = np.stack([u, v, s], axis=-1) - valve
        along = rel @ axis
        radial2 = (rel * rel).sum(-1) - along**2
        aorta = (along >= 0) & (along <= AORTA_LENGTH_MM) & (radial2 <= self.p.aorta_radius_mm**2)
        out[ra] = RA
        out[la] = LA
        out[aorta] = AORTA
        return out

    def labels(self, points: np.ndarray, frame: int) -> np.ndarray:
        """LAX-convention labels (0-5) at world points."""
        return tissue_to_label(self.tissue(points, frame))

    def bounds_local(self) -> tuple[np.ndarray, np.ndarray]:
        """Heart-frame box (lo, hi) that holds every heart tissue in every frame."""
        fs = self.frames[0]  # ventricles are largest at ED; atria grow by <= 12 %
        atrium = 1.12 * 1.4 * max(self.p.la_radius_mm, self.p.ra_radius_mm)
        top = max(2 * atrium, AORTA_LENGTH_MM + self.p.aorta_radius_mm)
        side = fs.rv_c + RV_WALL_MM + FAT_MM + 10
        lo = np.array([-fs.epi_r - 15, -side, -top - 5])
        hi = np.array([2 * fs.rv_a + fs.epi_r + 15, side, fs.epi_length + 10])
        return lo, hi

    # ---- truth -----------------------------------------------------------------------
    def centre_world(self) -> np.ndarray:
        """World position of the LV mid-cavity point at ED (a convenient heart centre)."""
        return self.to_world(np.array([0.0, 0.0, 0.5 * self.frames[0].length]))

    def lv_volume_ml(self, frame: int) -> float:
        """Closed-form LV blood pool volume (mL)."""
        fs = self.frames[frame]
        return HALF_ELLIPSOID * fs.r**2 * fs.length / 1000

    def volumes_ml(self, frame: int) -> dict:
        """Analytic LV blood pool, LV myocardium and RV blood pool volumes (mL)."""
        fs = self.frames[frame]
        lv = self.lv_volume_ml(frame)
        epi = HALF_ELLIPSOID * fs.epi_r**2 * fs.epi_length / 1000
        return {"LVC": lv, "LVM": epi - lv, "RVC": rv_volume_mm3(fs) / 1000}


def _in_ellipsoid(u, v, s, centre, semi_axes) -> np.ndarray:
    return (((u - centre[0]) / semi_axes[0]) ** 2 + ((v - centre[1]) / semi_axes[1]) ** 2
            + ((s - centre[2]) / semi_axes[2]) ** 2) <= 1


def tissue_to_label(tissue: np.ndarray) -> np.ndarray:
    """Tissue codes -> LAX-convention labels (0-5); non-labelled tissues become 0."""
    labels = tissue.copy()
    labels[labels > RA] = 0
    return labels


def rv_volume_mm3(fs: FrameShape, n_levels: int = 1001, n_angles: int = 2048) -> float:
    """RV blood pool volume: integral over s of area(RV ellipse) - area(ellipse & LV epi disc).

    The overlap of an ellipse and a disc is integrated in polar coordinates around the
    ellipse centre, where each ray meets the convex disc in one interval.
    """
    s = np.linspace(0.0, fs.rv_length, n_levels)
    d, a, c = fs.rv_section_at(s)
    radius = fs.epi_radius_at(s)
    theta = (np.arange(n_angles) + 0.5) * (2 * np.pi / n_angles)
    cos_t, sin_t = np.cos(theta)[None], np.sin(theta)[None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rho_e = 1 / np.sqrt((cos_t / a[:, None]) ** 2 + (sin_t / c[:, None]) ** 2)
    rho_e = np.nan_to_num(rho_e)
    # Ray from the ellipse centre (d, 0): |(d, 0) + t (cos, sin)|^2 = R^2.
    b = d[:, None] * cos_t
    disc = b**2 - d[:, None] ** 2 + radius[:, None] ** 2
    root = np.sqrt(np.clip(disc, 0, None))
    lo = np.clip(-b - root, 0, rho_e)
    hi = np.clip(-b + root, 0, rho_e)
    overlap = np.where(disc > 0, 0.5 * (hi**2 - lo**2), 0.0).sum(1) * (2 * np.pi / n_angles)
    area = np.pi * a * c - overlap
    return float(np.trapezoid(area, s))
