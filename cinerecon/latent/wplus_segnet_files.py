"""File-level W+SegNet (DeepRecon Table 1 ablation): train on the inverted W+ codes of the
training subjects with their manual labels, and the Table 1 rows of a subject."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from cinerecon.io.files import write_history
from cinerecon.io.nifti import InputError, load_nifti, nifti_geometry
from cinerecon.latent.deeprecon_files import _square, load_latents
from cinerecon.metrics.per_label import structure_rows
from cinerecon.models.data import frames_to_slices
from cinerecon.models.resume import TrainingJob
from cinerecon.models.wplus_segnet import (WPlusSegNet, WPlusSegNetConfig, predict_wplus, save_wplus_segnet,
                                           train_wplus_segnet)

log = logging.getLogger(__name__)


def _subject_pairs(subject: str, latent_path, label_path) -> tuple[dict, np.ndarray, np.ndarray]:
    """The latents of a subject and its manual label array (X, Y, Z, T), checked against each other."""
    lat = load_latents(latent_path)
    labels, affine, _ = load_nifti(label_path, subject)
    if labels.ndim != 4 or lat["wplus"].shape[1] != labels.shape[2]:
        raise InputError(subject, latent_path, f"{lat['wplus'].shape[1]} slices of codes do not match the "
                                               f"label stack {labels.shape}")
    return lat, labels, affine


def code_label_set(latent_paths: dict, label_paths: dict) -> tuple[np.ndarray, np.ndarray]:
    """W+ codes (N, num_ws, w_dim) of the ED/ES slices of several subjects, with their manual labels (N, X, Y)."""
    codes, labels = [], []
    for s, path in latent_paths.items():
        lat, lab, _ = _subject_pairs(s, path, label_paths[s])
        codes.append(lat["wplus"].reshape(-1, *lat["wplus"].shape[2:]))
        labels.append(frames_to_slices(lab, lat["frames"]).astype(np.int64))
    return np.concatenate(codes).astype(np.float32), np.concatenate(labels)


def train_wplus_segnet_files(latent_paths_train: dict, label_paths_train: dict, latent_paths_val: dict,
                             label_paths_val: dict, settings: dict, outputs: dict, device: str,
                             job: TrainingJob | None = None) -> list[dict]:
    """Train W+SegNet (settings: model tiny|paper, epochs, batch_size, lr, seed); write outputs
    {"history": TSV, then "model": checkpoint}; the run saved and resumed through `job`. The
    net's num_ws, w_dim and resolution are those of the codes (the labelled subjects' ED/ES
    codes, small enough to hold in memory)."""
    job = job or TrainingJob.transient(outputs["model"])
    tc, tl = code_label_set(latent_paths_train, label_paths_train)
    vc, vl = code_label_set(latent_paths_val, label_paths_val)
    config = getattr(WPlusSegNetConfig, settings["model"])(resolution=_square(tl.shape), num_ws=tc.shape[1],
                                                           w_dim=tc.shape[2])
    log.info("W+SegNet %s at %d px on %d codes (%d validation)", settings["model"], config.resolution,
             len(tc), len(vc))
    model, history = train_wplus_segnet(tc, tl, vc, vl, config, epochs=settings["epochs"],
                                        batch_size=settings["batch_size"], lr=settings["lr"],
                                        seed=settings["seed"], device=device, log=log, state=job.state)
    write_history(outputs["history"], history)
    save_wplus_segnet(model, outputs["model"])
    job.finish()
    return history


def wplus_segnet_rows(subject: str, latent_path, label_path, image_path, model: WPlusSegNet, device,
                      method: str = "wplus_segnet") -> pd.DataFrame:
    """W+SegNet(w*) vs manual labels on the acquired slices at ED and ES: Dice, VOE, HD, HD95, ASD, ASSD
    per structure, 3D over the stack (spacing from the image's affine); the columns of
    :func:`cinerecon.latent.deeprecon_files.acquired_slice_rows`' metric frame."""
    lat, labels, _ = _subject_pairs(subject, latent_path, label_path)
    _, affine = nifti_geometry(image_path, subject)
    spacing = tuple(np.linalg.norm(affine[:3, :3], axis=0))
    n_frames, n_slices = lat["wplus"].shape[:2]
    pred = predict_wplus(model, lat["wplus"].reshape(-1, *lat["wplus"].shape[2:]), device=device)
    if pred.shape[1:] != labels.shape[:2]:
        raise InputError(subject, label_path, f"W+SegNet predicts {pred.shape[1:]} slices, labels are "
                                              f"{labels.shape[:2]}")
    pred = pred.reshape(n_frames, n_slices, *pred.shape[1:]).transpose(0, 2, 3, 1)   # (F, X, Y, Z)
    rows = []
    for phase, t, stack in zip(lat["phases"], lat["frames"], pred):
        rows += structure_rows(subject, method, str(phase), stack, labels[..., t], spacing)
    return pd.DataFrame(rows)
