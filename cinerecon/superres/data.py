"""Paired stacks as the networks see them: the low-resolution SAX stack of one phase with
its slices first, and the high-resolution truth resampled onto the grid Gemini-GAN writes.

Intensities: the cine's [p1, p99] window mapped to [-1, 1] (cinerecon.models.data); the
3D truth of the same scanner goes through the *same* window, so interpolation baselines
and networks are judged on one intensity scale.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from cinerecon.geometry import apply_affine
from cinerecon.io.nifti import InputError, load_nifti
from cinerecon.models.data import apply_window, intensity_window
from cinerecon.superres.grid import highres_grid

PHASES = ("ED", "ES")


@dataclass
class Stack:
    """One subject's low-resolution SAX stack at ED and ES, and its high-resolution grid."""

    subject: str
    images: dict          # {phase: (Z, X, Y) float32 in [-1, 1]}
    frames: dict          # {phase: frame index}
    affine: np.ndarray    # the aligned stack's
    window: tuple
    hr_affine: np.ndarray
    hr_shape: tuple       # (X', Y', Z') of the high-resolution grid
    xy_factor: int = 1
    z_factor: int = 1
    n_frames: int = 0     # of the cine

    @property
    def n_slices(self) -> int:
        return next(iter(self.images.values())).shape[0]


def truth_frames(subject: str, phenotypes_path) -> dict:
    """The frames of the synthetic 3D truth: ED = 0, ES = the truth's ES frame."""
    return {"ED": 0, "ES": int(json.loads(Path(phenotypes_path).read_text())["es_frame"])}


def load_stack(subject: str, image_path, frames: dict, xy_factor: int, z_factor: int) -> Stack:
    cine, affine, _ = load_nifti(image_path, subject)
    if cine.ndim != 4:
        raise InputError(subject, image_path, f"need a 4D SAX cine, got shape {cine.shape}")
    bad = {p: t for p, t in frames.items() if not 0 <= t < cine.shape[3]}
    if bad:
        raise InputError(subject, image_path, f"frames {bad} outside the cine's {cine.shape[3]} frames")
    window = intensity_window(cine)
    images = {p: np.moveaxis(apply_window(cine[..., t], window), -1, 0) for p, t in frames.items()}
    hr_affine, hr_shape = highres_grid(affine, cine.shape, xy_factor, z_factor)
    return Stack(subject, images, dict(frames), affine, window, hr_affine, hr_shape, xy_factor, z_factor,
                 int(cine.shape[3]))


def grid_points(affine: np.ndarray, shape) -> np.ndarray:
    """World positions (X, Y, Z, 3) of every voxel of a grid."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape[:3]], indexing="ij"), axis=-1)
    return apply_affine(affine, ijk)


def sample_on_grid(volume, affine, grid_affine, grid_shape, order: int, mode: str = "constant",
                   fill: float = 0.0) -> np.ndarray:
    """A volume's values at every voxel of another grid (voxel indices of one in the other)."""
    to_source = np.linalg.solve(affine, grid_affine)
    ijk = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in grid_shape[:3]], indexing="ij"), axis=0)
    coords = np.tensordot(to_source[:3, :3], ijk, axes=1) + to_source[:3, 3, None, None, None]
    # lattices that coincide give integers up to round-off, and -1e-15 is outside for scipy
    nearest = np.round(coords)
    coords = np.where(np.abs(coords - nearest) < 1e-6, nearest, coords)
    return ndimage.map_coordinates(np.asarray(volume, np.float32), coords, order=order, mode=mode, cval=fill)


def truth_on_grid(stack: Stack, truth: dict) -> dict:
    """{phase: (image (Z', X', Y'), labels, mask)} of the 3D truth on the stack's grid: the
    mask is where the truth was acquired (its field of view)."""
    out = {}
    for phase in stack.images:
        image, affine, _ = load_nifti(truth[f"image_{phase}"], stack.subject)
        labels, label_affine, _ = load_nifti(truth[f"label_{phase}"], stack.subject)
        inside = sample_on_grid(np.ones(image.shape, np.float32), affine, stack.hr_affine, stack.hr_shape, 0) > 0.5
        values = sample_on_grid(apply_window(image, stack.window), affine, stack.hr_affine, stack.hr_shape, 1, fill=-1)
        lab = sample_on_grid(labels, label_affine, stack.hr_affine, stack.hr_shape, 0).round().astype(np.uint8)
        out[phase] = tuple(np.moveaxis(a, -1, 0) for a in (values, lab, inside))
    return out


def network_input(images: np.ndarray, in_slices: int, subject: str = "?") -> np.ndarray:
    """(Z, X, Y) -> (in_slices, X, Y): slices past the stack are -1 (air)."""
    n = images.shape[0]
    if n > in_slices:
        raise InputError(subject, "aligned SAX stack", f"{n} slices, the model takes at most {in_slices} "
                         "(gemini_gan.in_slices)")
    out = np.full((in_slices,) + images.shape[1:], -1.0, np.float32)
    out[:n] = images
    return out


def fit_slices(volume: np.ndarray, out_slices: int, fill) -> np.ndarray:
    """(Z', ...) truth padded or cut to the network's out_slices (cut voxels are never scored)."""
    out = np.full((out_slices,) + volume.shape[1:], fill, volume.dtype)
    n = min(out_slices, volume.shape[0])
    out[:n] = volume[:n]
    return out
