"""A parametric beating heart with analytic volumes.

Geometry lives in a heart frame: origin at the centre of the LV base plane at ED, axes
(u, v, s) = (towards the RV, e_rv x e_long, base -> apex along the LV long axis).

- LV blood pool: half a superellipsoid of revolution, (rho / r)^p + |s / L|^p <= 1 (p = 2:
  a prolate ellipsoid; p < 2 a pointed apex, p > 2 a blunt one), cut by the mitral base
  plane. That plane passes through the centre and tilts (the annulus is not perpendicular
  to the long axis; it rises towards the aortic valve), so it still halves the solid,
  whose central symmetry keeps the volume closed-form: c(p) r^2 L.
- LV myocardium: the same shape with elliptical cross-sections grown by the wall thickness
  w (1 +- e) (septal/lateral vs anterior/inferior walls differ) and 0.7 w at the apex,
  minus the blood pool. Myocardial volume is conserved, so w thickens in systole.
- Papillary muscles and trabeculae in the LV and RV blood pools: dark in the images and,
  as in UK Biobank's manual labels, part of the cavity label, so they change no volume.
- RV blood pool: a half ellipsoid offset towards the RV, minus the LV epicardium: a
  crescent that wraps the septum and is open at its (tricuspid) base, which may sit a few
  mm apical of the mitral base; shorter than the LV.
- LA, RA: ellipsoids above the base plane; aorta: a tube leaving the LV base upwards.
The base plane descends towards the fixed apex in systole (longitudinal shortening).

All volumes used as truth come from these closed-form shapes (LV) or from a quadrature
of the analytic cross-sections (RV), never from rendered voxels. With the detail off
(`SMOOTH`: p = 2, e = 0, no tilt, offset, muscles or trabeculae, the first wave's RV
contraction) this is the phantom of the first wave.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.special import beta, ndtri

from cinerecon.labels import LA, LVC, LVM, RA, RVC

# Tissue codes used for rendering; 1-5 coincide with the LAX label convention.
AIR, BODY, FAT, LUNG, LIVER, RV_WALL, AORTA, SPINE = 0, 8, 9, 10, 11, 12, 13, 14
PAPILLARY, LV_TRABECULAE, RV_TRABECULAE = 15, 16, 17
# Tissue -> LAX-convention label: heart structures keep theirs, muscles inside a blood
# pool belong to its cavity (the UK Biobank labelling protocol), the rest is background.
_LABEL_OF_TISSUE = np.zeros(256, dtype=np.uint8)
_LABEL_OF_TISSUE[[LVC, LVM, RVC, LA, RA]] = [LVC, LVM, RVC, LA, RA]
_LABEL_OF_TISSUE[[PAPILLARY, LV_TRABECULAE, RV_TRABECULAE]] = [LVC, LVC, RVC]
# The other common protocol: the LV's endocardial contour follows the blood, so its
# papillary muscles and trabeculae are myocardium (the RV, with no wall label, keeps its
# trabeculae in the cavity).
MUSCLES_AS_MYOCARDIUM = _LABEL_OF_TISSUE.copy()
MUSCLES_AS_MYOCARDIUM[[PAPILLARY, LV_TRABECULAE]] = LVM
HALF_ELLIPSOID = 2.0 / 3.0 * np.pi
APEX_WALL_FRACTION = 0.7  # the apex is thinner than the free wall
RV_WALL_MM, FAT_MM, AORTA_LENGTH_MM = 3.0, 2.5, 80.0


def shape_factor(p: float) -> float:
    """Volume of half a superellipsoid of revolution / (r^2 L): pi B(1/p, 2/p + 1) / p."""
    return HALF_ELLIPSOID if p == 2 else float(np.pi * beta(1 / p, 2 / p + 1) / p)


@dataclass(frozen=True)
class AnatomyDetail:
    """Ranges of the anatomical detail sample_params draws; the defaults (SMOOTH) turn
    each off: apex power 2, rv_size 1, rv_crescent 1.5, every other range (0, 0).

    apex_power: p of the superellipsoid (2 = ellipsoid); wall_ratio: e, the relative wall
    thickness difference between the septal/lateral and anterior/inferior walls;
    base_tilt_deg: tilt of the mitral base plane from perpendicular to the long axis;
    tricuspid_offset_mm: how far apical of the mitral base the RV starts;
    papillary_radius_mm: radius of the two LV papillary muscles (0: none);
    rv_size: scale of the RV's cross-section; rv_crescent: its width around the septum
    (v) relative to its depth (u), 1.5 in the smooth phantom;
    trabeculation: fraction of the endocardial layer of both ventricles that is trabeculae
    (0: smooth walls); trabecular_layer_mm: that layer's depth; rv_ef_solved: the RV's
    contraction solved so that it ejects exactly the drawn rv_ef.
    """

    apex_power_range: tuple = (2.0, 2.0)
    wall_ratio_range: tuple = (0.0, 0.0)
    base_tilt_deg_range: tuple = (0.0, 0.0)
    tricuspid_offset_mm_range: tuple = (0.0, 0.0)
    papillary_radius_mm_range: tuple = (0.0, 0.0)
    rv_size_range: tuple = (1.0, 1.0)
    rv_crescent_range: tuple = (1.5, 1.5)
    trabeculation: float = 0.0
    trabecular_layer_mm: float = 3.0
    rv_ef_solved: bool = False


SMOOTH = AnatomyDetail()  # the first wave's phantom


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
    # anatomical detail (AnatomyDetail; the defaults are the smooth phantom)
    apex_power: float = 2.0
    wall_ratio: float = 0.0
    base_tilt_deg: float = 0.0         # the mitral base rises towards the aortic valve
    tricuspid_offset_mm: float = 0.0
    papillary_radius_mm: float = 0.0
    rv_size: float = 1.0
    rv_crescent: float = 1.5
    trabeculation: float = 0.0
    trabecular_layer_mm: float = 3.0
    rv_ef_solved: bool = False
    detail_seed: int = 0               # the trabeculae's pattern

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
                  wall_range=(6, 12), detail: AnatomyDetail = SMOOTH) -> HeartParams:
    """Draw a plausible UK-Biobank-like heart (population variation, some impaired).

    The ranges (ED volume in mL, length/radius, wall in mm) widen or move the population,
    e.g. rounder or thinner-walled hearts than the default's. The detail is drawn after
    everything else, so a seed gives the same heart sizes, orientation and timing with
    or without it.
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
        apex_power=float(rng.uniform(*detail.apex_power_range)),
        wall_ratio=float(rng.uniform(*detail.wall_ratio_range)),
        base_tilt_deg=float(rng.uniform(*detail.base_tilt_deg_range)),
        tricuspid_offset_mm=float(rng.uniform(*detail.tricuspid_offset_mm_range)),
        papillary_radius_mm=float(rng.uniform(*detail.papillary_radius_mm_range)),
        rv_size=float(rng.uniform(*detail.rv_size_range)),
        rv_crescent=float(rng.uniform(*detail.rv_crescent_range)),
        trabeculation=float(detail.trabeculation),
        trabecular_layer_mm=float(detail.trabecular_layer_mm),
        rv_ef_solved=bool(detail.rv_ef_solved),
        detail_seed=int(rng.integers(2**31)),
    )


def _unit(v):
    return v / np.linalg.norm(v)


@dataclass(frozen=True)
class FrameShape:
    """The heart's dimensions in one frame (heart-frame mm)."""

    base: float       # s position of the base plane's centre
    r: float          # LV blood pool radius
    length: float     # LV blood pool length (base plane to endocardial apex)
    wall: float       # LV wall thickness
    rv_a: float       # RV ellipse semi-axis along u at the base
    rv_c: float       # RV ellipse semi-axis along v at the base
    rv_septal: float  # RV ellipse septal edge, as a fraction of the local epi radius
    rv_length: float
    atrial_scale: float
    p: float = 2.0                # apex power of the LV superellipsoids
    wall_ratio: float = 0.0       # e: the wall is w (1 + e) along u, w (1 - e) along v
    tilt: tuple = (0.0, 0.0)      # the mitral plane: s' = -(tilt . (u, v))
    rv_base: float = 0.0          # s' where the RV starts (tricuspid offset)

    def profile(self, s, length):
        """Relative cross-section size (1 - |s / length|^p)^(1/p) at depth s (0 beyond)."""
        z = np.minimum(np.abs(s) / length, 1.0)
        if self.p == 2:
            return np.sqrt(1 - z * z)
        return (1 - z**self.p) ** (1 / self.p)

    def epi_radius_at(self, s):
        """LV epicardial semi-axis along u (septum and RV) at depth s below the base plane."""
        return self.epi_u * self.profile(np.maximum(s, 0.0), self.epi_length)

    def rv_section_at(self, s, grow: float = 0.0, epi_radius=None):
        """RV ellipse (centre offset d, semi-axes a, c) at depth s; grow inflates it (mm).

        The centre follows the epicardium so the septal edge stays inside the LV at every
        level: the crescent wraps the septum from the base to the RV apex. epi_radius:
        epi_radius_at(s), where the caller has it already.
        """
        k = np.sqrt(np.maximum(1 - (s / self.rv_length) ** 2, 0.0))
        d = self.rv_a * k + self.rv_septal * (self.epi_radius_at(s) if epi_radius is None else epi_radius)
        if grow:
            k = np.sqrt(np.maximum(1 - (s / (self.rv_length + grow)) ** 2, 0.0))
        return d, (self.rv_a + grow) * k, (self.rv_c + grow) * k

    def in_superellipsoid(self, u, v, s, a_u, a_v, length):
        """((u/a_u)^2 + (v/a_v)^2)^(p/2) + |s/length|^p <= 1."""
        radial2 = (u / a_u) ** 2 + (v / a_v) ** 2
        z = np.abs(s) / length
        if self.p == 2:
            return radial2 + z * z <= 1
        inside = (radial2 <= 1) & (z <= 1)  # the powers only where the answer can be yes
        near = np.flatnonzero(inside)
        inside[near] = radial2[near] ** (self.p / 2) + z[near] ** self.p <= 1
        return inside

    def below_mitral_plane(self, u, v, s):
        return s + self.tilt[0] * u + self.tilt[1] * v >= 0

    @property
    def epi_r(self) -> float:
        return self.r + self.wall

    @property
    def epi_u(self) -> float:
        return self.r + self.wall * (1 + self.wall_ratio)

    @property
    def epi_v(self) -> float:
        return self.r + self.wall * (1 - self.wall_ratio)

    @property
    def epi_length(self) -> float:
        return self.length + APEX_WALL_FRACTION * self.wall

    @property
    def lift(self) -> float:
        """How far above s' = 0 the tilted mitral plane reaches inside the epicardium."""
        return float(np.hypot(*self.tilt) * max(self.epi_u, self.epi_v))


class HeartModel:
    """Evaluates tissue labels at world points and the analytic volumes per frame."""

    def __init__(self, params: HeartParams):
        self.p = params
        e_long = np.asarray(params.e_long)
        e_rv = np.asarray(params.e_rv)
        self.rotation = np.stack([e_rv, np.cross(e_long, e_rv), e_long], axis=1)
        self.origin = np.asarray(params.origin)
        self.f = contraction_curve(params.n_frames, params.es_frame)
        ang = np.deg2rad(params.aorta_angle_deg)
        self.aorta_dir_uv = np.array([np.cos(ang), np.sin(ang)])
        # the mitral plane rises (towards s < 0) in the aortic valve's direction
        self.tilt = tuple(float(x) for x in np.tan(np.deg2rad(params.base_tilt_deg)) * self.aorta_dir_uv)
        g_es = self._rv_contraction()
        self.frames = [self._frame_shape(fi, g_es) for fi in self.f]
        self._trabeculae = _pattern(params.detail_seed)

    # ---- shapes over time -------------------------------------------------------------
    def _rv_contraction(self) -> float:
        """RV cross-section scale at ES. Solved (rv_ef_solved) so the RV ejects rv_ef (a
        coarse quadrature; the truth volumes use the fine one); otherwise the first wave's
        closed guess, which overshoots rv_ef by 8-19 points (the truth is exact either way:
        it comes from the volumes, not from rv_ef)."""
        p = self.p
        if not p.rv_ef_solved:
            rv_len_ed = p.rv_length_frac * self._frame_shape(0.0, 1.0).length
            return float(np.sqrt((1 - p.rv_ef / 100) * rv_len_ed / (rv_len_ed - p.base_descent_mm)))

        def rv_ml(f, g):
            return rv_volume_mm3(self._frame_shape(f, g), n_levels=201, n_angles=256)

        target = rv_ml(0.0, 1.0) * (1 - p.rv_ef / 100)
        if rv_ml(1.0, 0.2) >= target:
            return 0.2
        if rv_ml(1.0, 1.0) <= target:
            return 1.0
        return float(brentq(lambda g: rv_ml(1.0, g) - target, 0.2, 1.0, xtol=1e-6))

    def _frame_shape(self, f: float, g_es: float) -> FrameShape:
        p = self.p
        c = shape_factor(p.apex_power)
        e = p.wall_ratio
        r_ed = (p.lv_edv_ml * 1000 / (c * p.lv_aspect)) ** (1 / 3)
        len_ed = p.lv_aspect * r_ed
        vol_ed = c * r_ed**2 * len_ed
        vol = vol_ed * (1 - p.lv_ef / 100 * f)
        base = p.base_descent_mm * f
        length = len_ed - base
        r = np.sqrt(vol / (c * length))
        def myo_volume(r_, length_, w):
            return c * ((r_ + w * (1 + e)) * (r_ + w * (1 - e)) * (length_ + APEX_WALL_FRACTION * w) - r_**2 * length_)

        myo = myo_volume(r_ed, len_ed, p.wall_mm)
        wall = brentq(lambda w: myo_volume(r, length, w) - myo, 0.0, 100.0, xtol=1e-12)
        # RV: cross-section shrinks by g (g_es at ES) and shortens with the base.
        rv_len_ed = p.rv_length_frac * len_ed
        rv_length = rv_len_ed - base
        g = 1 - (1 - g_es) * f
        rv_ed = p.rv_scale * p.rv_size * (r_ed + p.wall_mm)
        return FrameShape(base=base, r=r, length=length, wall=wall,
                          rv_a=0.9 * rv_ed * g, rv_c=p.rv_crescent * rv_ed * g,
                          rv_septal=p.rv_septal_frac, rv_length=rv_length,
                          atrial_scale=1 + 0.12 * f, p=p.apex_power, wall_ratio=e, tilt=self.tilt,
                          rv_base=p.tricuspid_offset_mm)

    def to_heart_frame(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> heart-frame (u, v, s)."""
        return (np.asarray(points) - self.origin) @ self.rotation

    def to_world(self, uvs: np.ndarray) -> np.ndarray:
        return np.asarray(uvs) @ self.rotation.T + self.origin

    # ---- labels ----------------------------------------------------------------------
    def tissue(self, points: np.ndarray, frame: int, muscles: bool = True) -> np.ndarray:
        """Tissue code (uint8) of the heart at world points (..., 3); AIR where none."""
        return self.tissue_local(self.to_heart_frame(points), frame, muscles)

    def tissue_local(self, q: np.ndarray, frame: int, muscles: bool = True) -> np.ndarray:
        """Tissue code at heart-frame points (..., 3). Later assignments win overlaps.

        muscles False leaves out the papillary muscles and trabeculae, which change no
        label (they belong to their cavity): what the labels alone need, faster.
        """
        fs = self.frames[frame]
        shape = q.shape[:-1]
        q = q.reshape(-1, 3)
        out = np.zeros(len(q), dtype=np.uint8)
        s_all = q[:, 2] - fs.base
        lift = fs.lift
        below = np.flatnonzero(s_all >= -lift - 3)
        above = np.flatnonzero(s_all < lift)
        out[above] = self._above_base(q[above, 0], q[above, 1], s_all[above], fs)
        u, v, s = q[below, 0], q[below, 1], s_all[below]
        sub = out[below]
        mitral = fs.below_mitral_plane(u, v, s)
        epi_whole = fs.in_superellipsoid(u, v, s, fs.epi_u, fs.epi_v, fs.epi_length)
        epi = mitral & epi_whole
        endo = mitral & fs.in_superellipsoid(u, v, s, fs.r, fs.r, fs.length)
        ventricle = s >= fs.rv_base
        k = fs.profile(np.maximum(s, 0), fs.epi_length)  # the epicardium's relative size
        d, a, c = fs.rv_section_at(s, epi_radius=fs.epi_u * k)
        rv = ventricle & (s <= fs.rv_length) & (((u - d) / np.maximum(a, 1e-9)) ** 2
                                                 + (v / np.maximum(c, 1e-9)) ** 2 <= 1)
        d, a, c = fs.rv_section_at(s, grow=RV_WALL_MM, epi_radius=fs.epi_u * k)
        rv_outer = ventricle & (((u - d) / np.maximum(a, 1e-9)) ** 2
                                + (v / np.maximum(c, 1e-9)) ** 2 <= 1)
        # Epicardial fat: a thin layer around both ventricles (bright in bSSFP).
        fat = ((u / (fs.epi_u * k + FAT_MM)) ** 2 + (v / (fs.epi_v * k + FAT_MM)) ** 2 <= 1) | rv_outer
        fat &= (s + fs.tilt[0] * u + fs.tilt[1] * v >= -3) & (s <= fs.epi_length + FAT_MM) & (sub == AIR)
        sub[fat] = FAT
        sub[rv_outer & ~epi_whole] = RV_WALL
        rv &= ~epi_whole  # the RV never reaches into the epicardium, cut or not
        sub[rv] = RVC
        sub[epi] = LVM
        sub[endo] = LVC
        if muscles:
            self._muscles(sub, u, v, s, fs, endo, rv, fs.epi_u * k)
        out[below] = sub
        return out.reshape(shape)

    def _muscles(self, sub, u, v, s, fs: FrameShape, endo, rv, epi_radius) -> None:
        """Papillary muscles and trabeculae inside the blood pools (sub is edited in place).

        Both move with the walls: they are placed in coordinates scaled by the frame's
        cavity size, so the same tissue is found at the same relative place in every frame.
        """
        p, ed = self.p, self.frames[0]
        if p.trabeculation > 0:
            layer = p.trabecular_layer_mm
            inner_r = max(fs.r - layer, 0.5)
            inner = fs.in_superellipsoid(u, v, s, inner_r, inner_r, max(fs.length - layer, 0.5))
            def scaled(idx):  # the layer's points only, in the ED cavity's coordinates
                return np.stack([u[idx] * (ed.r / fs.r), v[idx] * (ed.r / fs.r), s[idx] * (ed.length / fs.length)], -1)

            lv_layer = np.flatnonzero(endo & ~inner & (s > 0.25 * fs.length))
            sub[lv_layer[self._trabeculae(scaled(lv_layer), p.trabeculation)]] = LV_TRABECULAE
            d, a, c = fs.rv_section_at(s, grow=-layer, epi_radius=epi_radius)
            rv_inner = ((u - d) / np.maximum(a, 1e-9)) ** 2 + (v / np.maximum(c, 1e-9)) ** 2 <= 1
            rv_layer = np.flatnonzero(rv & ~(rv_inner & (s <= fs.rv_length - layer)))
            sub[rv_layer[self._trabeculae(scaled(rv_layer) + 100.0, p.trabeculation)]] = RV_TRABECULAE
        if p.papillary_radius_mm > 0:
            # anterolateral and posteromedial muscles, +-55 degrees from the lateral wall (-u),
            # from the mid-ventricle towards the apex; thicker as the cavity empties
            radius = p.papillary_radius_mm * np.sqrt(ed.r / fs.r)
            centre_s, half_length = 0.6 * fs.length, 0.25 * fs.length
            reach = fs.r * fs.profile(centre_s, fs.length) - 0.8 * radius
            for angle in (np.deg2rad(180 - 55), np.deg2rad(180 + 55)):
                cu, cv = reach * np.cos(angle), reach * np.sin(angle)
                inside = ((u - cu) ** 2 + (v - cv) ** 2) / radius**2 + ((s - centre_s) / half_length) ** 2 <= 1
                sub[endo & inside] = PAPILLARY

    def _above_base(self, u, v, s, fs: FrameShape) -> np.ndarray:
        """Atria and aortic root, above the base plane (the ventricles win any overlap)."""
        out = np.zeros(len(u), dtype=np.uint8)
        la_r = self.p.la_radius_mm * fs.atrial_scale
        ra_r = self.p.ra_radius_mm * fs.atrial_scale
        la_centre = (-0.2 * fs.epi_r, 0.3 * fs.epi_r, -0.9 * 1.4 * la_r)
        ra_centre = (fs.rv_section_at(0.0)[0] + 0.1 * fs.rv_a, -0.2 * fs.rv_c, -0.9 * 1.3 * ra_r)
        la = _in_ellipsoid(u, v, s, la_centre, (la_r, 1.1 * la_r, 1.4 * la_r))
        ra = _in_ellipsoid(u, v, s, ra_centre, (ra_r, 1.1 * ra_r, 1.3 * ra_r))
        # the aortic valve sits on the (tilted) mitral plane, above the LV outflow tract
        valve_uv = 0.5 * fs.r * self.aorta_dir_uv
        valve = np.array([*valve_uv, -(fs.tilt[0] * valve_uv[0] + fs.tilt[1] * valve_uv[1])])
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
        return tissue_to_label(self.tissue(points, frame, muscles=False))

    def bounds_local(self) -> tuple[np.ndarray, np.ndarray]:
        """Heart-frame box (lo, hi) that holds every heart tissue in every frame."""
        fs = self.frames[0]  # ventricles are largest at ED; atria grow by <= 12 %
        atrium = 1.12 * 1.4 * max(self.p.la_radius_mm, self.p.ra_radius_mm)
        top = max(2 * atrium, AORTA_LENGTH_MM + self.p.aorta_radius_mm) + fs.lift
        side = max(fs.rv_c + RV_WALL_MM, fs.epi_v) + FAT_MM + 10
        lo = np.array([-fs.epi_u - 15, -side, -top - 5])
        hi = np.array([2 * fs.rv_a + fs.epi_u + 15, side, fs.epi_length + 10])
        return lo, hi

    # ---- truth -----------------------------------------------------------------------
    def centre_world(self) -> np.ndarray:
        """World position of the LV mid-cavity point at ED (a convenient heart centre)."""
        return self.to_world(np.array([0.0, 0.0, 0.5 * self.frames[0].length]))

    def lv_volume_ml(self, frame: int) -> float:
        """Closed-form LV blood pool volume (mL): the tilted plane through the centre halves it."""
        fs = self.frames[frame]
        return shape_factor(fs.p) * fs.r**2 * fs.length / 1000

    def volumes_ml(self, frame: int) -> dict:
        """Analytic LV blood pool, LV myocardium and RV blood pool volumes (mL)."""
        fs = self.frames[frame]
        lv = self.lv_volume_ml(frame)
        epi = shape_factor(fs.p) * fs.epi_u * fs.epi_v * fs.epi_length / 1000
        return {"LVC": lv, "LVM": epi - lv, "RVC": rv_volume_mm3(fs) / 1000}

    def atrial_volumes_ml(self, frame: int, step_mm: float = 1.0) -> dict:
        """LA and RA volumes (mL) as the labels draw them (ventricles and aorta win overlaps),
        counted on a `step_mm` grid above the base: no closed form survives the overlaps
        (1 mm is within 0.3 % of 0.5 mm)."""
        fs = self.frames[frame]
        lo, hi = self.bounds_local()
        hi = hi.copy()
        # the atria reach 0.1 of their long semi-axis past the base plane, which has moved by
        # `lift` (tilt) and `base` (descent in systole)
        hi[2] = fs.base + fs.lift + 0.2 * 1.4 * fs.atrial_scale * max(self.p.la_radius_mm, self.p.ra_radius_mm) + 5
        axes = [np.arange(lo[i], hi[i], step_mm) + step_mm / 2 for i in range(3)]
        labels = np.empty(0, np.uint8)
        for u in np.array_split(axes[0], max(1, len(axes[0]) // 16)):  # bounded memory
            q = np.stack(np.meshgrid(u, axes[1], axes[2], indexing="ij"), -1).reshape(-1, 3)
            labels = np.concatenate([labels, tissue_to_label(self.tissue_local(q, frame, muscles=False))])
        voxel_ml = step_mm**3 / 1000
        return {"LA": float((labels == LA).sum() * voxel_ml), "RA": float((labels == RA).sum() * voxel_ml)}


def _pattern(seed: int):
    """A fixed random field over heart-frame mm (sum of plane waves, ~6 mm features);
    `field(points, fraction)` is True on about `fraction` of space."""
    rng = np.random.default_rng([seed, 17])
    waves = rng.normal(size=(6, 3))
    waves *= (1 / 6.0) / np.linalg.norm(waves, axis=1, keepdims=True)
    phases = rng.uniform(0, 2 * np.pi, 6)

    def field(points, fraction):
        value = np.sin(2 * np.pi * points @ waves.T + phases).sum(-1) / np.sqrt(3)  # ~N(0, 1)
        return value > ndtri(1 - fraction)

    return field


def _in_ellipsoid(u, v, s, centre, semi_axes) -> np.ndarray:
    return (((u - centre[0]) / semi_axes[0]) ** 2 + ((v - centre[1]) / semi_axes[1]) ** 2
            + ((s - centre[2]) / semi_axes[2]) ** 2) <= 1


def tissue_to_label(tissue: np.ndarray, table: np.ndarray | None = None) -> np.ndarray:
    """Tissue codes -> LAX-convention labels (0-5): papillary muscles and trabeculae belong
    to their cavity (or, with table MUSCLES_AS_MYOCARDIUM, to the wall), non-labelled
    tissues become 0."""
    return (_LABEL_OF_TISSUE if table is None else table)[tissue]


def rv_volume_mm3(fs: FrameShape, n_levels: int = 1001, n_angles: int = 2048) -> float:
    """RV blood pool volume: integral over s of area(RV ellipse) - area(RV ellipse & LV epi).

    The LV epicardium's cross-section is an ellipse (semi-axes epi_u k, epi_v k) at every
    level; its overlap with the RV ellipse is integrated in polar coordinates around the RV
    ellipse's centre, where each ray meets the convex epicardium in one interval.
    """
    s = np.linspace(fs.rv_base, fs.rv_length, n_levels)
    d, a, c = fs.rv_section_at(s)
    k = fs.profile(s, fs.epi_length)
    big_a, big_b = (fs.epi_u * k)[:, None], (fs.epi_v * k)[:, None]
    theta = (np.arange(n_angles) + 0.5) * (2 * np.pi / n_angles)
    cos_t, sin_t = np.cos(theta)[None], np.sin(theta)[None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rho_e = 1 / np.sqrt((cos_t / a[:, None]) ** 2 + (sin_t / c[:, None]) ** 2)
        rho_e = np.nan_to_num(rho_e)
        # Ray (d, 0) + t (cos, sin) inside the epi ellipse: alpha t^2 + beta t + gamma <= 0.
        alpha = (cos_t / big_a) ** 2 + (sin_t / big_b) ** 2
        beta_ = 2 * d[:, None] * cos_t / big_a**2
        gamma = (d[:, None] / big_a) ** 2 - 1
        disc = beta_**2 - 4 * alpha * gamma
        root = np.sqrt(np.clip(disc, 0, None))
        lo = np.clip((-beta_ - root) / (2 * alpha), 0, rho_e)
        hi = np.clip((-beta_ + root) / (2 * alpha), 0, rho_e)
    inside = (disc > 0) & np.isfinite(alpha) & (k[:, None] > 0)
    overlap = np.where(inside, 0.5 * (hi**2 - lo**2), 0.0).sum(1) * (2 * np.pi / n_angles)
    area = np.pi * a * c - overlap
    return float(np.trapezoid(area, s))
