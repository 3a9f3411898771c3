"""File-level segmentation steps: train on labelled subjects, predict, evaluate (DirectSeg)."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from cinerecon.io.files import write_history, write_tsv
from cinerecon.io.nifti import frame_interval, load_nifti, save_nifti
from cinerecon.io.subject import label_ed_es
from cinerecon.metrics.per_label import structure_rows
from cinerecon.models.data import slices_from_subject
from cinerecon.models.train_seg import (
    load_checkpoint,
    plot_history,
    predict_cine,
    save_checkpoint,
    train_unet,
)
from cinerecon.models.unet import UNetConfig
from cinerecon.phenotypes import labelled_frames, phenotypes

log = logging.getLogger(__name__)


def default_device() -> str:
    """The GPU when this job has one (SLURM/local gpu=1 rules), otherwise the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def training_frames(subject: str, path, labels: np.ndarray, affine: np.ndarray, which: str,
                    stride: int = 1) -> list[int]:
    """Frames with labels used for training: ED and ES, or every `stride`-th labelled frame
    and always ED and ES (an all-background frame is unlabelled, never a training target; a
    UK Biobank cine labelled at ED and ES gives both, whatever the stride)."""
    frames = label_ed_es(subject, path, labels, affine)
    chosen = {frames["ED"], frames["ES"]}
    if which == "all":
        chosen |= {int(t) for t in labelled_frames(labels)[::stride]}
    return sorted(chosen)


def load_training_set(pairs, which_frames: str, stride: int = 1):
    """Stack (image, label) slices of several subjects: pairs = [(subject, image, labels)]."""
    images, labels = [], []
    for subject, image_path, label_path in pairs:
        image, _, _ = load_nifti(image_path, subject)
        lab, affine, _ = load_nifti(label_path, subject)
        x, y = slices_from_subject(image, lab, training_frames(subject, label_path, lab, affine, which_frames, stride))
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


def train_from_files(train_pairs, val_pairs, settings: dict, checkpoint, history_path, curve_path):
    """Train the SAX U-Net and write the checkpoint, the per-epoch log and the loss curve."""
    config = getattr(UNetConfig, settings["model"])()
    stride = settings.get("frame_stride", 1)
    train_x, train_y = load_training_set(train_pairs, settings["frames"], stride)
    val_x, val_y = load_training_set(val_pairs, settings["frames"], stride)
    log.info("training on %d slices, validating on %d", len(train_x), len(val_x))
    model, history = train_unet(train_x, train_y, val_x, val_y, config, epochs=settings["epochs"],
                                batch_size=settings["batch_size"], lr=settings["lr"],
                                seed=settings["seed"], log=log, device=default_device())
    save_checkpoint(model, config, checkpoint)
    write_history(history_path, history)
    plot_history(history, curve_path)
    return history


def segment_subject(subject: str, image_path, checkpoint, output, frames: str, label_path=None,
                    batch_size: int = 64, device: str | None = None, model=None) -> dict:
    """Predict SAX labels for ED/ES (from the labels when present, else all) or all frames.

    `model`, when given, is the checkpoint already loaded on `device` (shard jobs load
    it once for many subjects).
    """
    device = device or default_device()
    model = model if model is not None else load_checkpoint(checkpoint, device)
    image, affine, header = load_nifti(image_path, subject)
    wanted = list(range(image.shape[3]))
    if frames != "all" and label_path is not None:
        lab, lab_affine, _ = load_nifti(label_path, subject)
        wanted = sorted(set(label_ed_es(subject, label_path, lab, lab_affine).values()))
    start = time.perf_counter()
    pred = np.zeros(image.shape, dtype=np.uint8)
    pred[..., wanted] = predict_cine(model, image, wanted, batch_size, device)
    seconds = time.perf_counter() - start
    save_nifti(output, pred, affine, frame_interval(header), dtype=np.uint8)
    return {"frames": wanted, "seconds": seconds, "slices_per_second": len(wanted) * image.shape[2] / seconds}


def directseg_rows(subject: str, seg_path, label_path, method: str = "directseg") -> tuple[pd.DataFrame, pd.DataFrame]:
    """SAX-stack 3D segmentation metrics per structure (Table 1) at ED and ES, and phenotype row."""
    seg, affine, _ = load_nifti(seg_path, subject)
    lab, _, _ = load_nifti(label_path, subject)
    frames = label_ed_es(subject, label_path, lab, affine)
    spacing = tuple(np.linalg.norm(affine[:3, :3], axis=0))
    rows = [row for phase, t in frames.items()
            for row in structure_rows(subject, method, phase, seg[..., t], lab[..., t], spacing)]
    phen = phenotypes(seg[..., frames["ED"]], seg[..., frames["ES"]], affine)
    return pd.DataFrame(rows), pd.DataFrame([{"subject": subject, "method": method, **phen}])
