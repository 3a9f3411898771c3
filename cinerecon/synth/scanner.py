"""UK Biobank-like acquisition: plan SAX/LAX planes on the heart and render bSSFP cines.

Planning mirrors how the SAX stack and LAX views are prescribed on a scanner: the stack
is perpendicular to the LV long axis (with a small planning tilt) from above the base to
beyond the apex; the 2/3/4-chamber views contain the long axis at their characteristic
angles around it. Rendering averages the anatomy over the slice profile (thick slices),
blurs in-plane (PSF), applies a coil bias field and Rician noise.

The defaults are the *realistic* phantom, calibrated so that the baselines' LAX Dice
lands near the papers' real-data figures (README, "A phantom as hard as real data"):
anatomical detail (heart.AnatomyDetail), a fine tissue texture, blood signal that varies
with flow over the cycle, an off-resonance dark band, and breath-hold misalignment that
moves slices through-plane and rotates them. `phantom: smooth` starts from the first
wave's phantom instead (every one of those off), and any single setting can be overridden.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cinerecon.geometry import plane_pixel_centres
from cinerecon.labels import LA, LVC, LVM, RA, RVC
from cinerecon.synth import heart as H


@dataclass(frozen=True)
class AcquisitionConfig:
    """Acquisition geometry and image quality (UK Biobank defaults)."""

    n_frames: int = 50
    pixel_mm: float = 1.8269
    sax_matrix: tuple = (208, 180)
    lax_matrix: tuple = (208, 190)
    sax_thickness_mm: float = 8.0
    sax_spacing_mm: float = 10.0
    lax_thickness_mm: float = 6.0
    profile_samples: int = 5          # sub-planes averaged across the slice thickness
    sax_shift_rms_mm: float = 2.5     # RMS of each SAX slice's 2D breath-hold displacement
    lax_shift_rms_mm: float = 2.5
    noise_sigma: float = 0.04         # Rician noise, relative to blood signal ~0.9
    bias_strength: float = 0.15
    max_tilt_deg: float = 4.0
    truth_spacing_mm: float = 1.0
    # The population the hearts are drawn from (see heart.sample_params).
    impaired_fraction: float = 0.2
    lv_edv_range: tuple = (100.0, 200.0)
    lv_aspect_range: tuple = (2.8, 3.5)
    wall_range: tuple = (6.0, 12.0)
    # Anatomical detail (heart.AnatomyDetail), drawn per subject; SMOOTH_PHANTOM has the off values.
    apex_power_range: tuple = (1.7, 2.6)
    wall_ratio_range: tuple = (-0.2, 0.2)
    base_tilt_deg_range: tuple = (8.0, 20.0)
    tricuspid_offset_mm_range: tuple = (0.0, 5.0)
    papillary_radius_mm_range: tuple = (3.5, 5.5)
    rv_size_range: tuple = (1.0, 1.2)
    rv_crescent_range: tuple = (1.3, 1.8)
    trabeculation: float = 0.6
    trabecular_layer_mm: float = 6.0
    rv_ef_solved: bool = True
    # bSSFP-like image detail (0: off)
    tissue_texture: float = 0.06      # fine multiplicative texture of the heart's tissues
    flow_variation: float = 0.12      # blood signal modulated by flow, over space and the cycle
    banding_depth: float = 0.5        # one off-resonance dark band across the field of view
    # Breath-hold misalignment beyond the in-plane shifts (0: in-plane only)
    sax_through_plane_rms_mm: float = 3.0
    lax_through_plane_rms_mm: float = 3.0
    rotation_rms_deg: float = 3.0     # each slice's heart rotated about its centre
    # SAX coverage: the first slice's distance above the mitral base centre and the last
    # slice's beyond the epicardial apex (negative: the stack misses part of the LV there)
    sax_first_slice_above_base_mm_range: tuple = (-12.0, 4.0)
    sax_last_slice_past_apex_mm_range: tuple = (-15.0, 0.0)
    # Manual labels: each label image's contours displaced smoothly by this RMS (mm), as
    # independent annotators of the SAX stack and of each LAX view draw them (0: exact)
    annotation_sd_mm: float = 3.0
    # The LAX annotators' protocol: the LV's papillary muscles and trabeculae drawn as
    # myocardium, where the SAX labels (UK Biobank's protocol) count them as blood pool
    lax_muscles_as_myocardium: bool = True
    # The paired 3D acquisition (super-resolution truth, cinerecon.synth.highres): in-plane
    # pixels per acquired pixel, the target slice thickness (k = round(spacing / slice_mm)
    # thin slices per acquired spacing) and the margin around the ventricles
    sr_xy_factor: int = 1
    sr_slice_mm: float = 2.0
    sr_margin_mm: float = 10.0
    # The scanner's tissue contrast (CONTRASTS): `ukbb` (1.5 T Aera bSSFP) or `external`, a
    # second site's scanner for domain adaptation
    contrast: str = "ukbb"

    @classmethod
    def from_dict(cls, d: dict | None) -> "AcquisitionConfig":
        """Settings from a config mapping; `phantom: smooth` starts from SMOOTH_PHANTOM."""
        d = dict(d or {})
        phantom = d.pop("phantom", "realistic")
        if phantom not in ("realistic", "smooth"):
            raise ValueError(f"synthetic acquisition phantom must be realistic or smooth, got {phantom!r}")
        for key in d:
            if key.endswith(("_range", "_matrix")):
                d[key] = tuple(d[key])
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown synthetic acquisition settings: {sorted(unknown)}")
        return cls(**{**(SMOOTH_PHANTOM if phantom == "smooth" else {}), **d})

    def anatomy(self) -> H.AnatomyDetail:
        return H.AnatomyDetail(**{k: getattr(self, k) for k in H.AnatomyDetail.__dataclass_fields__})


# The first wave's phantom: smooth shapes, flat tissue, in-plane breath-hold shifts only.
SMOOTH_PHANTOM = {
    **{k: v.default for k, v in H.AnatomyDetail.__dataclass_fields__.items()},
    "tissue_texture": 0.0, "flow_variation": 0.0, "banding_depth": 0.0,
    "sax_through_plane_rms_mm": 0.0, "lax_through_plane_rms_mm": 0.0, "rotation_rms_deg": 0.0,
    "sax_first_slice_above_base_mm_range": (4.0, 14.0), "sax_last_slice_past_apex_mm_range": (0.0, 6.0),
    "annotation_sd_mm": 0.0, "lax_muscles_as_myocardium": False,
}


# Relative bSSFP signal per tissue: bright blood and fat, dark myocardium and lung.
BASE_INTENSITY = {
    H.AIR: 0.0, LVC: 0.9, LVM: 0.26, RVC: 0.88, LA: 0.85, RA: 0.85, H.BODY: 0.22,
    H.FAT: 0.72, H.LUNG: 0.05, H.LIVER: 0.33, H.RV_WALL: 0.26, H.AORTA: 0.92, H.SPINE: 0.42,
}
# Another site's bSSFP (the second domain): darker blood, brighter myocardium, body and
# liver, darker fat, so blood-myocardium contrast is three quarters of the UK Biobank scanner's.
EXTERNAL_INTENSITY = {
    H.AIR: 0.0, LVC: 0.8, LVM: 0.32, RVC: 0.77, LA: 0.74, RA: 0.74, H.BODY: 0.3,
    H.FAT: 0.45, H.LUNG: 0.08, H.LIVER: 0.42, H.RV_WALL: 0.32, H.AORTA: 0.82, H.SPINE: 0.5,
}
CONTRASTS = {"ukbb": BASE_INTENSITY, "external": EXTERNAL_INTENSITY}
BLOOD = (LVC, RVC, LA, RA, H.AORTA)

LAX_ANGLES_DEG = {"4ch": 0.0, "2ch": 90.0}  # 3ch follows the aortic valve


@dataclass
class Plane:
    """One planned acquisition: a stack (SAX, several slices) or a single LAX view."""

    name: str
    affine: np.ndarray      # 4x4 voxel -> world of the NIfTI (z = slice index)
    shape: tuple            # in-plane matrix
    n_slices: int
    thickness_mm: float
    shifts_mm: np.ndarray   # (n_slices, 2) heart displacement along the i, j pixel axes
    through_mm: np.ndarray | None = None   # (n_slices,) heart displacement along the normal
    rotations: np.ndarray | None = None    # (n_slices, 3, 3) heart rotation about `pivot`
    pivot: np.ndarray | None = None        # world point the rotations turn about

    def breath_hold(self, rng, through_rms_mm: float, rotation_rms_deg: float, pivot) -> None:
        """Add through-plane shifts and small rotations to each slice's breath-hold pose."""
        self.through_mm = rng.normal(0.0, through_rms_mm, self.n_slices)
        vectors = rng.normal(0.0, np.deg2rad(rotation_rms_deg) / np.sqrt(3), (self.n_slices, 3))
        # none drawn: no rotation at all, so the smooth phantom's points are exactly its own
        self.rotations = np.stack([_rotation_matrix(v) for v in vectors]) if rotation_rms_deg else None
        self.pivot = np.asarray(pivot, dtype=float)

    def rotation_deg(self, k: int) -> float:
        if self.rotations is None:
            return 0.0
        return float(np.rad2deg(np.arccos(np.clip((np.trace(self.rotations[k]) - 1) / 2, -1, 1))))


def _rotation_matrix(vector) -> np.ndarray:
    """Rotation by |vector| radians about its direction (Rodrigues)."""
    angle = np.linalg.norm(vector)
    if angle == 0:
        return np.eye(3)
    k = np.asarray(vector) / angle
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def _rotate(vec, axis, angle_rad):
    """Rodrigues rotation of vec around a unit axis."""
    axis = axis / np.linalg.norm(axis)
    return (vec * np.cos(angle_rad) + np.cross(axis, vec) * np.sin(angle_rad)
            + axis * axis.dot(vec) * (1 - np.cos(angle_rad)))


def _plane_affine(centre, i_dir, j_dir, normal, pixel_mm, z_mm, shape):
    affine = np.eye(4)
    affine[:3, 0] = i_dir * pixel_mm
    affine[:3, 1] = j_dir * pixel_mm
    affine[:3, 2] = normal * z_mm
    affine[:3, 3] = centre - (shape[0] - 1) / 2 * i_dir * pixel_mm - (shape[1] - 1) / 2 * j_dir * pixel_mm
    return affine


def _random_unit_perpendicular(rng, axis):
    v = rng.normal(size=3)
    v -= v.dot(axis) * axis
    return v / np.linalg.norm(v)


def _shifts(rng, n, rms_mm):
    return rng.normal(0.0, rms_mm / np.sqrt(2), size=(n, 2))


def plan_sax(model: H.HeartModel, acq: AcquisitionConfig, rng) -> Plane:
    """SAX stack perpendicular to the long axis, from above the base to past the apex."""
    rot = model.rotation
    e_u, e_long = rot[:, 0], rot[:, 2]
    tilt = np.deg2rad(rng.uniform(0, acq.max_tilt_deg))
    normal = _rotate(e_long, _random_unit_perpendicular(rng, e_long), tilt)
    # In-plane axes: world left-right projected on the plane, randomly rotated.
    i_dir = np.array([1.0, 0.0, 0.0]) - normal[0] * normal
    i_dir = _rotate(i_dir / np.linalg.norm(i_dir), normal, np.deg2rad(rng.uniform(-15, 15)))
    j_dir = np.cross(normal, i_dir)
    start = -rng.uniform(*acq.sax_first_slice_above_base_mm_range)
    apex = model.frames[0].epi_length + rng.uniform(*acq.sax_last_slice_past_apex_mm_range)
    n_slices = int(np.clip(np.ceil((apex - start) / acq.sax_spacing_mm) + 1, 9, 16))
    in_plane = e_u * model.frames[0].epi_r * 0.5 + rng.normal(0, 8, 3)
    in_plane -= in_plane.dot(normal) * normal
    centre = model.origin + start * normal + in_plane
    affine = _plane_affine(centre, i_dir, j_dir, normal, acq.pixel_mm, acq.sax_spacing_mm,
                           acq.sax_matrix)
    return Plane("sa", affine, acq.sax_matrix, n_slices, acq.sax_thickness_mm,
                 _shifts(rng, n_slices, acq.sax_shift_rms_mm))


def plan_lax(model: H.HeartModel, view: str, acq: AcquisitionConfig, rng) -> Plane:
    """A long-axis view: a plane containing the LV long axis at the view's angle."""
    rot = model.rotation
    e_u, e_v, e_long = rot[:, 0], rot[:, 1], rot[:, 2]
    angle = LAX_ANGLES_DEG.get(view, model.p.aorta_angle_deg) + rng.uniform(-5, 5)
    a = np.deg2rad(angle)
    in_view = np.cos(a) * e_u + np.sin(a) * e_v
    normal = np.cross(e_long, in_view)
    # Planning imprecision: a small tilt and offset, still through the anatomy.
    normal = _rotate(normal, in_view, np.deg2rad(rng.uniform(-3, 3)))
    long_in_plane = e_long - e_long.dot(normal) * normal
    long_in_plane /= np.linalg.norm(long_in_plane)
    j_dir = _rotate(long_in_plane, normal, np.deg2rad(rng.uniform(-25, 25)))
    i_dir = np.cross(j_dir, normal)
    centre = model.origin + 0.25 * model.frames[0].length * e_long + rng.normal(0, 6) * i_dir
    centre += rng.uniform(-2, 2) * normal
    affine = _plane_affine(centre, i_dir, j_dir, normal, acq.pixel_mm, acq.lax_thickness_mm,
                           acq.lax_matrix)
    return Plane(f"la_{view}", affine, acq.lax_matrix, 1, acq.lax_thickness_mm,
                 _shifts(rng, 1, acq.lax_shift_rms_mm))


class Body:
    """Static surroundings in world coordinates: chest, subcutaneous fat, lungs, liver, spine."""

    def __init__(self, rng, heart_centre):
        self.half_axes = np.array([165.0, 115.0]) * rng.uniform(0.9, 1.1, 2)
        self.centre = np.array([0.0, -10.0])
        side = np.array([95.0, -5.0, 40.0])
        self.lungs = [(side * [1, 1, 1] + rng.normal(0, 5, 3), np.array([65.0, 85.0, 130.0])),
                      (side * [-1, 1, 1] + rng.normal(0, 5, 3), np.array([70.0, 85.0, 130.0]))]
        self.liver = (np.array([35.0, -5.0, heart_centre[2] - 150.0]) + rng.normal(0, 5, 3),
                      np.array([140.0, 100.0, 85.0]))
        self.waves = rng.normal(0, 1 / 40.0, size=(4, 3))   # texture, ~4 cm wavelength
        self.phases = rng.uniform(0, 2 * np.pi, 4)

    def tissue(self, points: np.ndarray) -> np.ndarray:
        x, y = points[..., 0] - self.centre[0], points[..., 1] - self.centre[1]
        rho = np.sqrt((x / self.half_axes[0]) ** 2 + (y / self.half_axes[1]) ** 2)
        out = np.full(points.shape[:-1], H.AIR, dtype=np.uint8)
        out[rho <= 1] = H.FAT
        out[rho <= 1 - 14 / self.half_axes.min()] = H.BODY
        for centre, axes in [self.liver, *self.lungs]:
            inside = (((points - centre) / axes) ** 2).sum(-1) <= 1
            out[inside & (rho <= 0.9)] = H.LIVER if axes is self.liver[1] else H.LUNG
        spine = (x**2 + (y + 0.75 * self.half_axes[1]) ** 2) <= 18.0**2
        out[spine] = H.SPINE
        return out

    def texture(self, points: np.ndarray) -> np.ndarray:
        """Smooth multiplicative texture (+-8 %) so tissue is not flat."""
        t = np.zeros(points.shape[:-1])
        for k, ph in zip(self.waves, self.phases):
            t += np.sin(2 * np.pi * points @ k + ph)
        return 1 + 0.04 * t


class ImageDetail:
    """Per-subject bSSFP detail beyond flat tissue classes.

    - texture: a fine (~3.5 mm) multiplicative pattern of the heart's tissues, fixed to the
      heart so it moves with it;
    - flow: blood signal that varies smoothly over the pools and over the cycle (inflow
      enhancement and dephasing), +- flow_variation;
    - band: one dark off-resonance band, a few mm wide, static in the scanner, 5-12 cm
      from the heart.
    The random draws do not depend on the amplitudes, so turning one feature off leaves the
    others as they were.
    """

    def __init__(self, rng, acq: AcquisitionConfig, heart_centre):
        self.texture_amp, self.flow_amp = acq.tissue_texture, acq.flow_variation
        self.band_depth = acq.banding_depth
        self.texture_waves = _waves(rng, 8, 3.5)
        self.texture_phases = rng.uniform(0, 2 * np.pi, 8)
        self.flow_waves = _waves(rng, 3, 40.0)
        self.flow_phases = rng.uniform(0, 2 * np.pi, 3)
        self.band_normal = _unit(rng.normal(size=3))
        self.band_point = np.asarray(heart_centre) + rng.choice([-1, 1]) * rng.uniform(50, 120) * self.band_normal
        self.band_width = rng.uniform(3.0, 6.0)

    def prepare(self, q: np.ndarray) -> dict:
        """What heart_signal needs at heart-frame points q, computed once for every frame."""
        texture = np.sin(2 * np.pi * q @ self.texture_waves.T + self.texture_phases).sum(-1) / 2.0
        flow = 2 * np.pi * q @ self.flow_waves.T + self.flow_phases
        return {"texture": 1 + self.texture_amp * texture, "sin": np.sin(flow), "cos": np.cos(flow)}

    def heart_signal(self, tissue: np.ndarray, prepared: dict, lut: np.ndarray, phase: float) -> np.ndarray:
        """Signal of heart tissues at the prepared points in a frame at `phase` (0-1) of the cycle."""
        value = lut[tissue] * prepared["texture"]
        if self.flow_amp:
            blood = np.isin(tissue, BLOOD)
            # sin(a + 2 pi phase), per wave, from the prepared sin a and cos a
            flow = (prepared["sin"][blood] * np.cos(2 * np.pi * phase)
                    + prepared["cos"][blood] * np.sin(2 * np.pi * phase)).mean(-1)
            value[blood] *= 1 + self.flow_amp * flow
        return value

    def band(self, points: np.ndarray) -> np.ndarray:
        """Multiplicative off-resonance band at world points."""
        distance = (points - self.band_point) @ self.band_normal
        return 1 - self.band_depth * np.exp(-((distance / self.band_width) ** 2))


def _unit(v):
    return v / np.linalg.norm(v)


def _waves(rng, n: int, wavelength_mm: float) -> np.ndarray:
    """n random plane-wave vectors (cycles per mm) of one wavelength."""
    w = rng.normal(size=(n, 3))
    return w / np.linalg.norm(w, axis=1, keepdims=True) / wavelength_mm


def tissue_intensities(rng, contrast: str = "ukbb") -> np.ndarray:
    """Per-subject lookup table tissue code -> signal (contrast varies between scans)."""
    if contrast not in CONTRASTS:
        raise ValueError(f"synthetic acquisition contrast must be one of {sorted(CONTRASTS)}, got {contrast!r}")
    lut = np.zeros(256)
    for code, value in CONTRASTS[contrast].items():
        lut[code] = value * rng.uniform(0.92, 1.08)
    # muscle in the blood pools is myocardium; trabeculae are finer than a pixel, so half
    # blood (derived, not drawn: the smooth phantom's draws stay as they were)
    lut[H.PAPILLARY] = lut[LVM]
    lut[H.LV_TRABECULAE] = 0.5 * (lut[LVM] + lut[LVC])
    lut[H.RV_TRABECULAE] = 0.5 * (lut[LVM] + lut[RVC])
    return lut


def profile_offsets(thickness_mm: float, samples: int) -> np.ndarray:
    """Midpoints of `samples` equal parts of the slice thickness; odd counts include 0."""
    return thickness_mm * ((np.arange(samples) + 0.5) / samples - 0.5)


def render_plane(model: H.HeartModel, body: Body, plane: Plane, slice_index: int,
                 lut: np.ndarray, frames, samples: int, detail: ImageDetail | None = None,
                 label_table: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free images (nx, ny, T) and centre-plane labels of one slice over frames.

    Images average the anatomy over the slice profile; labels are the anatomy on the
    slice's centre plane (label_table: heart.tissue_to_label's protocol). The heart is
    moved by the slice's breath-hold pose (shift and rotation), the body is not.
    """
    affine = plane.affine
    normal = affine[:3, 2] / np.linalg.norm(affine[:3, 2])
    offsets = profile_offsets(plane.thickness_mm, samples)
    centre = len(offsets) // 2
    points = (plane_pixel_centres(affine, plane.shape, k=slice_index)[None]
              + offsets[:, None, None, None] * normal)                      # (M, nx, ny, 3)
    background = lut[body.tissue(points)] * body.texture(points)
    q = model.to_heart_frame(heart_points(plane, slice_index, points))
    lo, hi = model.bounds_local()
    roi = np.all((q >= lo) & (q <= hi), axis=-1)
    q_roi = q[roi]
    # q[roi] is ordered by sample, so the centre plane's points are one contiguous block.
    roi_flat = roi.reshape(len(offsets), -1)
    centre_pixels = np.flatnonzero(roi_flat[centre])
    first = int(roi_flat[:centre].sum())
    images = np.empty(plane.shape + (len(frames),))
    labels = np.zeros((int(np.prod(plane.shape)), len(frames)), dtype=np.uint8)
    if detail is not None and not (detail.texture_amp or detail.flow_amp):
        detail = None  # flat tissue: nothing to prepare
    prepared = None if detail is None else detail.prepare(q_roi)
    for t, frame in enumerate(frames):
        tissue = model.tissue_local(q_roi, frame)
        value = background.copy()
        heart = lut[tissue] if detail is None else detail.heart_signal(tissue, prepared, lut, frame / model.p.n_frames)
        value[roi] = np.where(tissue != H.AIR, heart, background[roi])
        images[..., t] = value.mean(axis=0)
        labels[centre_pixels, t] = H.tissue_to_label(tissue[first:first + len(centre_pixels)], label_table)
    return images, labels.reshape(plane.shape + (len(frames),))


def heart_displacement(plane: Plane, slice_index: int) -> np.ndarray:
    """World displacement of the heart in one slice (its breath-hold shift, in-plane and,
    where drawn, through-plane)."""
    i_dir, j_dir, normal = (plane.affine[:3, k] / np.linalg.norm(plane.affine[:3, k]) for k in range(3))
    dx, dy = plane.shifts_mm[slice_index]
    dz = 0.0 if plane.through_mm is None else plane.through_mm[slice_index]
    return dx * i_dir + dy * j_dir + dz * normal


def axis_shift(plane: Plane, slice_index: int, origin, e_long) -> np.ndarray:
    """In-plane displacement (along i, j, mm) of the LV long axis where it crosses a SAX
    slice: the correction that re-aligns the LV in that slice. With an in-plane shift alone
    it is the shift; a through-plane shift moves the crossing along the tilted axis and a
    rotation moves it by its lever arm from the pivot, which no in-plane correction undoes
    elsewhere in the slice."""
    i_dir, j_dir, normal = (plane.affine[:3, k] / np.linalg.norm(plane.affine[:3, k]) for k in range(3))
    point = plane.affine[:3, 3] + slice_index * plane.affine[:3, 2]
    origin, e_long = np.asarray(origin, float), np.asarray(e_long, float)
    before = origin + e_long * (normal @ (point - origin)) / (normal @ e_long)
    rotation = np.eye(3) if plane.rotations is None else plane.rotations[slice_index]
    pivot = origin if plane.pivot is None else plane.pivot
    moved_origin = rotation @ (origin - pivot) + pivot + heart_displacement(plane, slice_index)
    moved_axis = rotation @ e_long
    after = moved_origin + moved_axis * (normal @ (point - moved_origin)) / (normal @ moved_axis)
    return np.array([(after - before) @ i_dir, (after - before) @ j_dir])


def heart_points(plane: Plane, slice_index: int, points: np.ndarray) -> np.ndarray:
    """Where in the unmoved heart world points of a slice fall: the slice's heart is
    rotated about the pivot by R and displaced, so x_heart = R^T (x - d - c) + c."""
    moved = points - heart_displacement(plane, slice_index)
    if plane.rotations is None:
        return moved
    return (moved - plane.pivot) @ plane.rotations[slice_index] + plane.pivot


def bias_field(rng, strength: float):
    """A smooth multiplicative coil sensitivity over world space (returns a function)."""
    coef = rng.normal(0, strength, 5)
    centre = rng.normal(0, 30, 3)

    def field(points):
        x = (points - centre) / 150.0
        return np.exp(coef[0] * x[..., 0] + coef[1] * x[..., 1] + coef[2] * x[..., 2]
                      - abs(coef[3]) * (x[..., 0] ** 2 + x[..., 1] ** 2) + coef[4] * x[..., 0] * x[..., 1])

    return field


def finish_image(clean: np.ndarray, affine: np.ndarray, slice_index: int, bias, rng,
                 noise_sigma: float) -> np.ndarray:
    """PSF blur, coil bias and Rician noise on a (nx, ny, T) slice series; int16 scale."""
    blurred = ndimage.gaussian_filter(clean, sigma=(0.6, 0.6, 0))
    points = plane_pixel_centres(affine, clean.shape[:2], k=slice_index)
    signal = blurred * bias(points)[..., None]
    noise = rng.normal(0, noise_sigma, size=(2,) + signal.shape)
    magnitude = np.sqrt((signal + noise[0]) ** 2 + noise[1] ** 2)
    return np.clip(np.round(magnitude * 1000), 0, 32767).astype(np.int16)
