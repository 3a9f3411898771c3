"""File-level segmentation steps: train on labelled subjects, predict, evaluate (DirectSeg)."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from cinerecon.io.files import write_history
from cinerecon.io.nifti import frame_interval, load_nifti, save_nifti
from cinerecon.io.subject import label_ed_es
from cinerecon.metrics.per_label import structure_rows
from cinerecon.models.data import slices_from_subject
from cinerecon.models.resume import TrainingJob
from cinerecon.models.slice_store import cached_stores, write_stores
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


def subject_training_slices(subject: str, image_path, label_path, which_frames: str, stride: int = 1):
    """A subject's labelled training slices: images (N, 1, X, Y) in [-1, 1], labels (N, X, Y)."""
    image, _, _ = load_nifti(image_path, subject)
    lab, affine, _ = load_nifti(label_path, subject)
    return slices_from_subject(image, lab, training_frames(subject, label_path, lab, affine, which_frames, stride))


def training_stores(job: TrainingJob, sets: dict, which_frames: str, stride: int = 1) -> dict:
    """{name}_images / {name}_labels stores of each set of pairs ({name: [(subject, image, labels)]}),
    written subject by subject into the job's data folder (once per fingerprint)."""
    def build(folder):
        names = []
        for name, pairs in sets.items():
            chunks = (dict(zip((f"{name}_images", f"{name}_labels"),
                               subject_training_slices(*pair, which_frames, stride))) for pair in pairs)
            names += list(write_stores(folder, chunks, {f"{name}_images": np.float32, f"{name}_labels": np.uint8}))
        return names

    return cached_stores(job.data_folder, f"{job.fingerprint}:seg:{which_frames}:{stride}", build)


def train_from_files(train_pairs, val_pairs, settings: dict, checkpoint, history_path, curve_path,
                     job: TrainingJob | None = None):
    """Train the SAX U-Net on slices streamed from disk (the run saved and resumed through `job`);
    write the per-epoch log and the loss curve, then the checkpoint last."""
    config = getattr(UNetConfig, settings["model"])()
    job = job or TrainingJob.transient(checkpoint)
    for name, pairs in (("training", train_pairs), ("validation", val_pairs)):
        log.info("%s subjects (%d): %s", name, len(pairs), " ".join(pair[0] for pair in pairs))
    stores = training_stores(job, {"train": train_pairs, "val": val_pairs}, settings["frames"],
                             settings.get("frame_stride", 1))
    log.info("training on %d slices, validating on %d", len(stores["train_images"]), len(stores["val_images"]))
    model, history = train_unet(stores["train_images"], stores["train_labels"], stores["val_images"],
                                stores["val_labels"], config, epochs=settings["epochs"],
                                batch_size=settings["batch_size"], lr=settings["lr"], seed=settings["seed"],
                                log=log, device=default_device(), state=job.state, workers=job.workers,
                                precision=settings.get("precision", "fp32"), deterministic=job.deterministic)
    write_history(history_path, history)
    plot_history(history, curve_path)
    save_checkpoint(model, config, checkpoint)
    job.finish()
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
