"""UK Biobank-like acquisition: plan SAX/LAX planes on the heart and render bSSFP cines.

Planning mirrors how the SAX stack and LAX views are prescribed on a scanner: the stack
is perpendicular to the LV long axis (with a small planning tilt) from above the base to
beyond the apex; the 2/3/4-chamber views contain the long axis at their characteristic
angles around it. Rendering averages the anatomy over the slice profile (thick slices),
blurs in-plane (PSF), applies a coil bias field and Rician noise.
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

    @classmethod
    def from_dict(cls, d: dict | None) -> "AcquisitionConfig":
        d = dict(d or {})
        for key in ("sax_matrix", "lax_matrix", "lv_edv_range", "lv_aspect_range", "wall_range"):
            if key in d:
                d[key] = tuple(d[key])
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown synthetic acquisition settings: {sorted(unknown)}")
        return cls(**d)


# Relative bSSFP signal per tissue: bright blood and fat, dark myocardium and lung.
BASE_INTENSITY = {
    H.AIR: 0.0, LVC: 0.9, LVM: 0.26, RVC: 0.88, LA: 0.85, RA: 0.85, H.BODY: 0.22,
    H.FAT: 0.72, H.LUNG: 0.05, H.LIVER: 0.33, H.RV_WALL: 0.26, H.AORTA: 0.92, H.SPINE: 0.42,
}

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
    start = -rng.uniform(4, 14)
    apex = model.frames[0].epi_length + rng.uniform(0, 6)
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


def tissue_intensities(rng) -> np.ndarray:
    """Per-subject lookup table tissue code -> signal (contrast varies between scans)."""
    lut = np.zeros(256)
    for code, value in BASE_INTENSITY.items():
        lut[code] = value * rng.uniform(0.92, 1.08)
    return lut


def profile_offsets(thickness_mm: float, samples: int) -> np.ndarray:
    """Midpoints of `samples` equal parts of the slice thickness; odd counts include 0."""
    return thickness_mm * ((np.arange(samples) + 0.5) / samples - 0.5)


def render_plane(model: H.HeartModel, body: Body, plane: Plane, slice_index: int,
                 lut: np.ndarray, frames, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free images (nx, ny, T) and centre-plane labels of one slice over frames.

    Images average the anatomy over the slice profile; labels are the anatomy on the
    slice's centre plane. The heart is displaced by the slice's breath-hold shift, the
    body is not.
    """
    affine = plane.affine
    normal = affine[:3, 2] / np.linalg.norm(affine[:3, 2])
    offsets = profile_offsets(plane.thickness_mm, samples)
    centre = len(offsets) // 2
    points = (plane_pixel_centres(affine, plane.shape, k=slice_index)[None]
              + offsets[:, None, None, None] * normal)                      # (M, nx, ny, 3)
    background = lut[body.tissue(points)] * body.texture(points)
    q = model.to_heart_frame(points - heart_displacement(plane, slice_index))
    lo, hi = model.bounds_local()
    roi = np.all((q >= lo) & (q <= hi), axis=-1)
    q_roi = q[roi]
    # q[roi] is ordered by sample, so the centre plane's points are one contiguous block.
    roi_flat = roi.reshape(len(offsets), -1)
    centre_pixels = np.flatnonzero(roi_flat[centre])
    first = int(roi_flat[:centre].sum())
    images = np.empty(plane.shape + (len(frames),))
    labels = np.zeros((int(np.prod(plane.shape)), len(frames)), dtype=np.uint8)
    for t, frame in enumerate(frames):
        tissue = model.tissue_local(q_roi, frame)
        value = background.copy()
        value[roi] = np.where(tissue != H.AIR, lut[tissue], background[roi])
        images[..., t] = value.mean(axis=0)
        labels[centre_pixels, t] = H.tissue_to_label(tissue[first:first + len(centre_pixels)])
    return images, labels.reshape(plane.shape + (len(frames),))


def heart_displacement(plane: Plane, slice_index: int) -> np.ndarray:
    """World displacement of the heart in one slice (its breath-hold shift)."""
    i_dir = plane.affine[:3, 0] / np.linalg.norm(plane.affine[:3, 0])
    j_dir = plane.affine[:3, 1] / np.linalg.norm(plane.affine[:3, 1])
    dx, dy = plane.shifts_mm[slice_index]
    return dx * i_dir + dy * j_dir


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
