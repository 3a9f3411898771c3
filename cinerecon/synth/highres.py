"""Super-resolution truth: a high-resolution 3D image and its labels at ED and ES.

Gemini-GAN (Savioli et al.) learns from paired acquisitions: the 2D multi-breath-hold SAX
stack (8 mm slices every 10 mm) and a near-isotropic 3D cine of the same heart (1.2 x 1.2
x 2 mm, one breath-hold). The synthetic scanner renders the 3D acquisition from the same
anatomy, body, contrast, coil and image detail as the stack, without breath-hold poses and
with thin slices, over the ventricles.

Its grid is a refinement of the SAX stack's voxel lattice, so the pipeline's
high-resolution grid over a crop of the aligned stack (cinerecon.superres.grid) lands on
it exactly: in-plane `xy_factor` pixels per acquired pixel, centred on it the way an
image resized by that factor is (pixel m of the fine grid at acquired index
(m + 0.5) / f - 0.5); through-plane k = round(slice spacing / slice_mm) fine slices per
acquired spacing, acquired slice j on fine slice j * k.
"""

from __future__ import annotations

import numpy as np

from cinerecon.labels import RVC
from cinerecon.synth import heart as H
from cinerecon.synth import scanner as S
from cinerecon.superres.grid import lattice_affine

PHASES = ("ED", "ES")


def refinement(acq: S.AcquisitionConfig) -> tuple[int, int]:
    """(in-plane factor, through-plane factor k) of the 3D acquisition."""
    return int(acq.sr_xy_factor), max(1, int(round(acq.sax_spacing_mm / acq.sr_slice_mm)))


def ventricle_box(model: H.HeartModel, margin_mm: float) -> np.ndarray:
    """World corners (8, 3) of a heart-frame box around both ventricles in every frame."""
    fs = model.frames[0]  # ventricles are largest at ED
    side = max(fs.rv_c + H.RV_WALL_MM, fs.epi_v) + margin_mm
    lo = np.array([-fs.epi_u - margin_mm, -side, -fs.lift - margin_mm])
    hi = np.array([2 * fs.rv_a + fs.epi_u + margin_mm, side, fs.epi_length + margin_mm])
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    return model.to_world(corners)


def highres_plane(model: H.HeartModel, sax: S.Plane, acq: S.AcquisitionConfig) -> S.Plane:
    """The 3D acquisition as a plane stack: the SAX orientation, the refined lattice over
    the ventricles, thin slices and no breath-hold pose."""
    f, k = refinement(acq)
    fine = lattice_affine(sax.affine, f, k)
    index = np.linalg.solve(fine, np.c_[ventricle_box(model, acq.sr_margin_mm), np.ones(8)].T)[:3].T
    lo, hi = np.floor(index.min(0)).astype(int), np.ceil(index.max(0)).astype(int)
    shape = tuple(int(n) for n in hi - lo + 1)
    return S.Plane("sr", lattice_affine(sax.affine, f, k, lo), shape[:2], shape[2],
                   acq.sax_spacing_mm / k, np.zeros((shape[2], 2)))


def render_highres(model: H.HeartModel, body: S.Body, plane: S.Plane, lut: np.ndarray, frames: dict,
                   acq: S.AcquisitionConfig, detail: S.ImageDetail, coil, rng) -> dict:
    """{"image_ED": int16 (X, Y, Z), "label_ED": uint8 SAX labels, ... ES} of the 3D acquisition
    at frames {"ED": t, "ES": t}: the stack's rendering (slice profile, PSF, coil, Rician
    noise) slice by slice; labels in the SAX protocol (no atria, muscles in the cavity)."""
    order = [frames[p] for p in PHASES]
    shape = plane.shape + (plane.n_slices,)
    out = {f"{kind}_{p}": np.empty(shape, dtype) for p in PHASES
           for kind, dtype in (("image", np.int16), ("label", np.uint8))}
    for z in range(plane.n_slices):
        clean, labels = S.render_plane(model, body, plane, z, lut, order, acq.profile_samples, detail)
        image = S.finish_image(clean, plane.affine, z, coil, rng, acq.noise_sigma)
        labels[labels > RVC] = 0
        for t, phase in enumerate(PHASES):
            out[f"image_{phase}"][:, :, z] = image[..., t]
            out[f"label_{phase}"][:, :, z] = labels[..., t]
    return out
