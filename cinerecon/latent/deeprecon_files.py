"""File-level DeepRecon steps: train G and E, invert subjects, train Seg on G(w*),
reconstruct ED/ES volumes by lerp in W+, and the papers' per-slice rows (Table 1, PSNR/SSIM).
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pandas as pd
import torch

from cinerecon.baselines.grid import acquired_index, fine_affine, pad_slices, z_upsampling_factor
from cinerecon.io.files import atomic_path, write_history, write_json
from cinerecon.io.nifti import InputError, load_nifti, nifti_geometry, save_nifti
from cinerecon.io.subject import label_ed_es
from cinerecon.latent.deeprecon import InversionSettings, generate, invert_slices
from cinerecon.latent.interpolate import fine_latents
from cinerecon.latent.pretraining import cine_store
from cinerecon.metrics.image import psnr, ssim
from cinerecon.metrics.per_label import structure_rows
from cinerecon.models.data import frames_to_slices, normalise_intensity, slices_from_subject
from cinerecon.models.resume import TrainingJob
from cinerecon.models.encoder import EncoderConfig, FeatureDistance, save_encoder, train_encoder, unet_features
from cinerecon.models.stylegan2 import StyleGAN2Config, load_generator, save_generator, train_stylegan2
from cinerecon.models.train_seg import load_checkpoint, predict_slices, save_checkpoint, train_unet
from cinerecon.models.unet import UNetConfig

log = logging.getLogger(__name__)
PHASES = ("ED", "ES")


# ---- pre-training ------------------------------------------------------------------------
def _square(shape) -> int:
    """The side of square slices of `shape` (..., H, W)."""
    h, w = shape[-2:]
    if h != w:
        raise ValueError(f"DeepRecon needs square SAX crops (crop.sax_size), got {h}x{w}")
    return h


def _crop_size(image_paths: dict) -> int:
    """The (square) in-plane size of the pre-training subjects' SAX crops."""
    first = next(iter(image_paths), None)
    if first is None:
        raise ValueError("no pre-training subjects")
    shape, _ = nifti_geometry(image_paths[first], first)
    return int(_square(shape[:2]))


def train_generator_files(image_paths: dict, settings: dict, outputs: dict, device: str,
                          job: TrainingJob | None = None) -> list[dict]:
    """Train StyleGAN2 on the cine frames of the pre-training subjects (streamed from disk; the
    run saved and resumed through `job`); write history and samples, then G last.

    G works at `image_size` (the crop's size if unset): the crops are resampled to it over
    the same field of view (cinerecon.models.model_grid); E, the inversion and every
    generated slice follow G's grid, and generated slices are resampled back to the crop's."""
    job = job or TrainingJob.transient(outputs["generator"])
    crop = _crop_size(image_paths)
    size = settings.get("image_size") or crop
    images = cine_store(job, image_paths, settings.get("frame_stride", 1), size)
    config = getattr(StyleGAN2Config, settings["preset"])(resolution=size)
    log.info("StyleGAN2 %s at %d px (%s %d px crops) on %d slices of %d subjects", settings["preset"],
             config.resolution, "the" if size == crop else "resampled from", crop, len(images), len(image_paths))
    G, history = train_stylegan2(images, config, steps=settings["gan_steps"], batch_size=settings["batch_size"],
                                 lr=settings["gan_lr"], seed=settings["seed"], device=device, log=log,
                                 state=job.state, workers=job.workers, precision=settings.get("precision", "fp32"),
                                 deterministic=job.deterministic)
    write_history(outputs["history"], history)
    _sample_grid(G, images[:8], outputs["samples"], device)
    save_generator(G, outputs["generator"])  # last: a failing figure never leaves a model behind
    job.finish()
    return history


def _sample_grid(G, reals: np.ndarray, path, device) -> None:
    """Real slices (top) and random G samples (bottom), for a look at what G learned."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with torch.no_grad():
        z = torch.randn(len(reals), G.z_dim, generator=torch.Generator().manual_seed(0)).to(device)
        fakes = G.to(device).eval()(z).clamp(-1, 1).cpu().numpy()
    fig, axes = plt.subplots(2, len(reals), figsize=(1.6 * len(reals), 3.4))
    for row, batch in enumerate((reals, fakes)):
        for ax, img in zip(np.atleast_1d(axes[row]), batch):
            ax.imshow(img[0].T, cmap="gray", vmin=-1, vmax=1, origin="lower")
            ax.axis("off")
    fig.suptitle("real (top) and StyleGAN2 samples (bottom)")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def perceptual_from_seg(seg_checkpoint, device) -> FeatureDistance:
    """The perceptual distance: feature maps of the pipeline's own SAX U-Net (no downloads)."""
    return FeatureDistance(unet_features(load_checkpoint(seg_checkpoint, device))).to(device)


def train_encoder_files(generator_path, image_paths: dict, seg_checkpoint, settings: dict, outputs: dict,
                        device: str, job: TrainingJob | None = None) -> list[dict]:
    """Train the W+ encoder for G on the pre-training subjects' cine frames; history, then E last."""
    job = job or TrainingJob.transient(outputs["encoder"])
    G = load_generator(generator_path, device)
    images = cine_store(job, image_paths, settings.get("frame_stride", 1), G.resolution)  # on G's grid
    config = getattr(EncoderConfig, settings["preset"])().matched_to(G.config)
    E, history = train_encoder(G, images, config, steps=settings["encoder_steps"],
                               batch_size=settings["batch_size"], lr=settings["encoder_lr"],
                               seed=settings["seed"], device=device, log=log,
                               perceptual=perceptual_from_seg(seg_checkpoint, device),
                               state=job.state, workers=job.workers, precision=settings.get("precision", "fp32"),
                               deterministic=job.deterministic)
    write_history(outputs["history"], history)
    save_encoder(E, outputs["encoder"])
    job.finish()
    return history


# ---- inversion ------------------------------------------------------------------------
def subject_slices(subject: str, image_path, label_path) -> dict:
    """The ED and ES slices of a subject, ready to invert, with what is needed to write back."""
    image, affine, _ = load_nifti(image_path, subject)
    labels, _, _ = load_nifti(label_path, subject)
    frames = label_ed_es(subject, label_path, labels, affine)
    order = [frames[p] for p in PHASES]
    x, y = slices_from_subject(image, labels, order)
    return {"images": x, "labels": y, "frames": order, "n_slices": image.shape[2], "n_frames": image.shape[3],
            "affine": affine, "spacing": np.linalg.norm(affine[:3, :2], axis=0)}


def save_latents(path, codes: np.ndarray, frames, n_slices: int) -> None:
    """codes (F*Z, num_ws, w_dim) frame-major -> wplus (F, Z, num_ws, w_dim) with the frame indices."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, wplus=codes.reshape(len(frames), n_slices, *codes.shape[1:]),
                     frames=np.asarray(frames), phases=np.asarray(PHASES))


def load_latents(path) -> dict:
    with np.load(path) as z:
        return {"wplus": z["wplus"], "frames": [int(f) for f in z["frames"]], "phases": list(z["phases"])}


def invert_subjects(subjects: dict, G, E, perceptual, settings: InversionSettings, device,
                    history: list | None = None) -> dict:
    """Invert the ED/ES slices of many subjects in shared batches.

    subjects: {id: subject_slices(...)}; returns {id: {steps: codes (F*Z, num_ws, w_dim)}}.
    """
    ids = list(subjects)
    if not ids:
        return {}
    images = np.concatenate([subjects[s]["images"] for s in ids])
    codes = invert_slices(images, G, E, perceptual, subjects[ids[0]]["spacing"], settings, device, history)
    out, start = {}, 0
    for s in ids:
        n = len(subjects[s]["images"])
        out[s] = {steps: c[start:start + n] for steps, c in codes.items()}
        start += n
    return out


# ---- segmentation network trained on synthetic images G(w*) -----------------------------
def synthetic_training_set(G, latent_paths: dict, label_paths: dict, device) -> tuple[np.ndarray, np.ndarray]:
    """G(w*) of the ED/ES slices of several subjects, with their manual labels."""
    images, labels = [], []
    for s, path in latent_paths.items():
        lat = load_latents(path)
        lab, _, _ = load_nifti(label_paths[s], s)
        wplus = lat["wplus"].reshape(-1, *lat["wplus"].shape[2:])
        images.append(generate(G, wplus, device=device, crop=lab.shape[0]))
        labels.append(frames_to_slices(lab, lat["frames"]).astype(np.int64))
    return np.concatenate(images), np.concatenate(labels)


def train_latent_seg_files(generator_path, train: tuple[dict, dict], val: tuple[dict, dict], settings: dict,
                           outputs: dict, device: str, job: TrainingJob | None = None) -> list[dict]:
    """The paper's Seg: a U-Net trained with CE + Dice on G(w*) images of the labelled training
    subjects (ED/ES slices only, held in memory); the run saved and resumed through `job`."""
    G = load_generator(generator_path, device)
    tx, ty = synthetic_training_set(G, *train, device)
    vx, vy = synthetic_training_set(G, *val, device)
    config = getattr(UNetConfig, settings["model"])()
    job = job or TrainingJob.transient(outputs["model"])
    model, history = train_unet(tx, ty, vx, vy, config, epochs=settings["epochs"], batch_size=settings["batch_size"],
                                lr=settings["lr"], seed=settings["seed"], log=log, device=device, state=job.state,
                                precision=settings.get("precision", "fp32"), deterministic=job.deterministic)
    write_history(outputs["history"], history)
    save_checkpoint(model, config, outputs["model"])
    job.finish()
    return history


# ---- 3D reconstruction by lerp in W+ -----------------------------------------------------
def reconstruct_latent_subject(subject: str, latent_path, reference_image, G, seg_model, target_spacing_mm: float,
                               outputs: dict, record_path, device, method: str) -> dict:
    """ED/ES image and label volumes on the shared fine grid (acquired slice j at j*k + k//2).

    outputs: {"ED", "ES", "image_ED", "image_ES"}.
    """
    lat = load_latents(latent_path)
    shape, affine = nifti_geometry(reference_image, subject)
    k = z_upsampling_factor(float(np.linalg.norm(affine[:3, 2])), target_spacing_mm)
    record = {"subject": subject, "method": method, "k": k, "pad_slices": pad_slices(k),
              "n_slices": int(lat["wplus"].shape[1]), "n_frames": int(shape[3]),
              "frames": dict(zip(PHASES, lat["frames"]))}
    for i, phase in enumerate(PHASES):  # (no timings in the record: the same inputs give the same bytes)
        start = time.perf_counter()
        codes = fine_latents(torch.as_tensor(lat["wplus"][i]), k).numpy()
        images = generate(G, codes, device=device, crop=shape[0])     # (M, 1, X, Y)
        labels = predict_slices(seg_model, images, batch_size=64, device=device)
        log.info("subject %s: %s %s generated in %.2f s", subject, method, phase, time.perf_counter() - start)
        volume_affine = fine_affine(affine, k)
        save_nifti(outputs[f"image_{phase}"], np.moveaxis(images[:, 0], 0, -1).astype(np.float32), volume_affine)
        save_nifti(outputs[phase], np.moveaxis(labels, 0, -1), volume_affine, dtype=np.uint8)
    write_json(record_path, record)
    return record


# ---- per-slice rows: the papers' Table 1 and image quality ------------------------------
def acquired_slice_rows(subject: str, method: str, recon: dict, record_path, image_path, label_path):
    """Seg(G(w*)) vs manual labels on the acquired slices (Dice, VOE, HD, HD95, ASD, ASSD per
    structure, 3D over the stack), and PSNR/SSIM of G(w*) against the input slices, at ED and ES."""
    record = json.loads(open(record_path).read())
    k = record["k"]
    image, affine, _ = load_nifti(image_path, subject)
    labels, _, _ = load_nifti(label_path, subject)
    z = [acquired_index(j, k) for j in range(image.shape[2])]
    spacing = tuple(np.linalg.norm(affine[:3, :3], axis=0))
    metric_rows, image_rows = [], []
    for phase in PHASES:
        t = record["frames"][phase]
        pred = load_nifti(recon[phase], subject)[0][:, :, z]
        generated = load_nifti(recon[f"image_{phase}"], subject)[0][:, :, z]
        if pred.shape != labels.shape[:3]:
            raise InputError(subject, recon[phase], f"shape {pred.shape} does not match the stack {labels.shape[:3]}")
        metric_rows += structure_rows(subject, method, phase, pred, labels[..., t], spacing)
        real = normalise_intensity(image)[..., t]
        image_rows.append({"subject": subject, "method": method, "phase": phase,
                           "psnr": psnr(generated, real, data_range=2.0),
                           "ssim": ssim(generated, real, data_range=2.0)})
    return pd.DataFrame(metric_rows), pd.DataFrame(image_rows)


# ---- held-out slices --------------------------------------------------------------------
def heldout_latent_rows(subject: str, method: str, latent_path, image_path, label_path, G, seg_model,
                        device) -> pd.DataFrame:
    """Held-out-slice rows (cinerecon.metrics.heldout): G(lerp(w_{j-1}, w_{j+1}, 0.5)) and its
    Seg against acquired slice j, at ED and ES."""
    from cinerecon.latent.interpolate import lerp
    from cinerecon.metrics.heldout import heldout_rows, neighbour_midpoints

    lat = load_latents(latent_path)
    meta = subject_slices(subject, image_path, label_path)
    z, rows = meta["n_slices"], []
    for i, phase in enumerate(PHASES):
        codes = neighbour_midpoints(torch.as_tensor(lat["wplus"][i]), lerp).numpy()
        images = generate(G, codes, device=device, crop=meta["images"].shape[-1])
        labels = predict_slices(seg_model, images, batch_size=64, device=device)
        rows.append(heldout_rows(subject, method, phase, images[:, 0], labels, meta["images"][i * z:(i + 1) * z, 0],
                                 meta["labels"][i * z:(i + 1) * z]))
    return pd.concat(rows, ignore_index=True)
