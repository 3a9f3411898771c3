"""File-level MAE steps: train from the subjects' tensor files, load the models, and
evaluate a test subject (phenotypes, segmentation, robustness to missing planes).

`subjects` arguments map an ID to its tensor file (cinerecon.mae.data).
`settings` is the `mae` config section (config/schema.yaml).
"""

from __future__ import annotations

import logging
import zlib
from itertools import combinations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from cinerecon.io.files import write_history
from cinerecon.labels import LA, LVC, LVM, RA, RVC
from cinerecon.mae.data import TARGETS, MaeData, read_subject
from cinerecon.mae.inputs import N_SAX, PLANES, InputSettings
from cinerecon.mae.model import (
    MaeConfig,
    MaeSegmenter,
    PhenotypeRegressor,
    ResNetConfig,
    ResNetRegressor,
    WholeHeartMAE,
)
from cinerecon.mae.train import fit, load_encoder, pretraining, regression, segmentation
from cinerecon.models.checkpoints import load_weights, save_weights
from cinerecon.models.resume import TrainingJob

log = logging.getLogger(__name__)
FORMATS = {"pretrained": "cinerecon.mae/1", "phenotypes": "cinerecon.mae-phenotypes/1",
           "segmentation": "cinerecon.mae-segmentation/1", "resnet": "cinerecon.mae-resnet/1"}
STRUCTURES = {LVC: "LVC", LVM: "LVM", RVC: "RVC", LA: "LA", RA: "RA"}


def mae_config(settings: dict) -> MaeConfig:
    inputs = InputSettings.from_dict(settings)
    preset = getattr(MaeConfig, settings["preset"])
    return preset(**{**settings.get("model", {}), "pixels": inputs.pixels, "n_frames": inputs.n_frames,
                     "n_targets": len(TARGETS)})


def _data(subjects: dict, what: str, job: TrainingJob, memory_bytes: float = 4e9) -> MaeData:
    """The subjects' files; the cache's memory shared among the job's DataLoader workers."""
    if not subjects:
        raise ValueError(f"MAE {what}: no subjects")
    log.info("%s subjects (%d): %s", what, len(subjects), " ".join(subjects))
    return MaeData(subjects, memory_bytes / (1 + job.workers))


def _budget(stage: dict) -> dict:
    return {k: stage[k] for k in ("steps", "batch_size", "lr", "weight_decay")}


def _save(model, config: dict, kind: str, history: list[dict], outputs: dict, job: TrainingJob) -> list[dict]:
    """The history, then the model last (a failure never leaves a model behind), then the
    job's side state cleared."""
    write_history(outputs["history"], history)
    save_weights(model, config, FORMATS[kind], outputs["model"])
    job.finish()
    return history


def pretrain_files(subjects: dict, settings: dict, outputs: dict, device, job: TrainingJob | None = None):
    """Phase I on every given subject (labelled or not): masked reconstruction."""
    job = job or TrainingJob.transient(outputs["model"])
    data, config, stage = _data(subjects, "pre-training", job), mae_config(settings), settings["pretrain"]
    log.info("MAE %s: %d tokens per subject, %d visible", settings["preset"], config.n_tokens,
             config.n_visible(config.n_tokens))
    arrays, loss = pretraining(data)
    model, history = fit("pretrain", lambda: WholeHeartMAE(config), loss, arrays, **_budget(stage),
                         seed=settings["seed"], device=device, state=job.state, deterministic=job.deterministic,
                         workers=job.workers)
    return _save(model, {"model": config.to_dict()}, "pretrained", history, outputs, job)


def load_pretrained(path, device="cpu") -> WholeHeartMAE:
    payload = load_weights(path, FORMATS["pretrained"], "whole-heart MAE", device)
    model = WholeHeartMAE(MaeConfig.from_dict(payload["config"]["model"]))
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()


def target_scaling(data: MaeData) -> tuple[np.ndarray, np.ndarray]:
    """Mean and SD of the training targets (per phenotype, over the subjects that have it)."""
    known = np.isfinite(data.targets)
    if not known.any(axis=0).all():
        missing = [t for t, k in zip(TARGETS, known.any(axis=0)) if not k]
        raise ValueError(f"no training subject has a value for {missing}")
    mean = np.nanmean(data.targets, axis=0)
    sd = np.nanstd(data.targets, axis=0)
    return mean, np.where(sd > 0, sd, 1.0)


def finetune_phenotypes_files(subjects: dict, pretrained_path, settings: dict, outputs: dict, device,
                              job: TrainingJob | None = None):
    """Phase II: the pre-trained encoder and a regression head, on the subjects' targets."""
    job = job or TrainingJob.transient(outputs["model"])
    data, stage = _data(subjects, "phenotype fine-tuning", job), settings["phenotypes"]
    pretrained = load_pretrained(pretrained_path, device)
    mean, sd = target_scaling(data)

    def build():
        model = PhenotypeRegressor(pretrained.config)
        load_encoder(model, pretrained)
        return model

    arrays, loss = regression(data, mean, sd)
    model, history = fit("phenotypes", build, loss, arrays, **_budget(stage),
                         seed=settings["seed"], device=device, state=job.state, deterministic=job.deterministic,
                         workers=job.workers)
    config = {"model": pretrained.config.to_dict(), "targets": list(TARGETS), "mean": mean.tolist(), "sd": sd.tolist()}
    return _save(model, config, "phenotypes", history, outputs, job)


def finetune_segmentation_files(subjects: dict, pretrained_path, settings: dict, outputs: dict, device,
                                job: TrainingJob | None = None):
    """Phase II: the pre-trained encoder and the UNETR-style decoder, on every labelled
    (plane, frame) of the subjects, each plane's drawn classes only."""
    job = job or TrainingJob.transient(outputs["model"])
    data, stage = _data(subjects, "segmentation fine-tuning", job), settings["segmentation"]
    if not data.batch("labelled", range(len(data))).any():
        raise ValueError("MAE segmentation: no training subject has labels")
    pretrained = load_pretrained(pretrained_path, device)

    def build():
        model = MaeSegmenter(pretrained.config)
        load_encoder(model, pretrained)
        return model

    arrays, loss = segmentation(data)
    model, history = fit("segmentation", build, loss, arrays, **_budget(stage),
                         seed=settings["seed"], device=device, state=job.state, deterministic=job.deterministic,
                         workers=job.workers)
    return _save(model, {"model": pretrained.config.to_dict()}, "segmentation", history, outputs, job)


def resnet_config(settings: dict) -> ResNetConfig:
    inputs = InputSettings.from_dict(settings)
    stage = settings["resnet"]
    return ResNetConfig(in_channels=len(PLANES) * inputs.n_frames, width=stage["width"], blocks=tuple(stage["blocks"]),
                        n_targets=len(TARGETS))


def train_resnet_files(subjects: dict, settings: dict, outputs: dict, device, job: TrainingJob | None = None):
    """The comparison row: a ResNet from scratch on the same subjects, input and targets."""
    job = job or TrainingJob.transient(outputs["model"])
    data, stage, config = _data(subjects, "ResNet training", job), settings["resnet"], resnet_config(settings)
    mean, sd = target_scaling(data)
    arrays, loss = regression(data, mean, sd)
    model, history = fit("resnet", lambda: ResNetRegressor(config), loss, arrays, **_budget(stage), seed=settings["seed"], device=device, state=job.state,
                         deterministic=job.deterministic, workers=job.workers)
    config = {"model": config.to_dict(), "targets": list(TARGETS), "mean": mean.tolist(), "sd": sd.tolist()}
    return _save(model, config, "resnet", history, outputs, job)


class Regressor:
    """A phenotype network with its target scaling: predict() gives phenotypes in units."""

    def __init__(self, network, config: dict):
        self.network, self.mean, self.sd = network, np.array(config["mean"]), np.array(config["sd"])

    @torch.no_grad()
    def predict(self, image: torch.Tensor, planes=None) -> np.ndarray:
        return self.network(image, planes).cpu().double().numpy() * self.sd + self.mean


def load_regressor(path, kind: str, device="cpu") -> Regressor:
    payload = load_weights(path, FORMATS[kind], f"MAE {kind}", device)
    if kind == "phenotypes":
        network = PhenotypeRegressor(MaeConfig.from_dict(payload["config"]["model"]))
    else:
        network = ResNetRegressor(ResNetConfig.from_dict(payload["config"]["model"]))
    network.load_state_dict(payload["state_dict"])
    return Regressor(network.to(device).eval(), payload["config"])


def load_segmenter(path, device="cpu") -> MaeSegmenter:
    payload = load_weights(path, FORMATS["segmentation"], "MAE segmentation", device)
    model = MaeSegmenter(MaeConfig.from_dict(payload["config"]["model"]))
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()


# ---- evaluation of one test subject ------------------------------------------------------
def phenotype_rows(subject: str, arrays: dict, predictions: dict) -> pd.DataFrame:
    """Long rows (subject, method, phenotype, predicted, reference, abs_error, reference_source)."""
    rows = []
    for method, values in predictions.items():
        for name, value, ref in zip(TARGETS, values, arrays["targets"]):
            if np.isfinite(ref):
                rows.append({"subject": subject, "method": method, "phenotype": name, "predicted": float(value),
                             "reference": float(ref), "abs_error": abs(float(value) - float(ref)),
                             "reference_source": str(arrays["target_source"])})
    return pd.DataFrame(rows, columns=["subject", "method", "phenotype", "predicted", "reference", "abs_error",
                                       "reference_source"])


def dice_rows(subject: str, method: str, predicted: np.ndarray, arrays: dict, planes: list[int]) -> list[dict]:
    """Dice per structure over the labelled frames of the planes whose labels draw it
    (predicted: (len(planes), T, P, P) uint8 for `planes`)."""
    rows = []
    for value, name in STRUCTURES.items():
        pred_sum = truth_sum = overlap = 0
        for j, plane in enumerate(planes):
            if not arrays["carried"][plane, value]:
                continue
            frames = arrays["labelled"][plane]
            p, t = predicted[j][frames] == value, arrays["labels"][plane][frames] == value
            pred_sum, truth_sum, overlap = pred_sum + p.sum(), truth_sum + t.sum(), overlap + (p & t).sum()
        if truth_sum + pred_sum:
            rows.append({"subject": subject, "method": method, "structure": name,
                         "view": "sax" if value in (LVC, LVM, RVC) else "lax",
                         "dice": 2 * float(overlap) / float(pred_sum + truth_sum)})
    return rows


def removals(subject: str, n_pairs: int, seed: int) -> list[tuple[int, ...]]:
    """Every single plane, and `n_pairs` pairs drawn per subject (seeded by the seed and the ID)."""
    pairs = list(combinations(range(len(PLANES)), 2))
    rng = np.random.default_rng([seed, zlib.crc32(subject.encode())])
    picked = rng.choice(len(pairs), size=min(n_pairs, len(pairs)), replace=False)
    return [(i,) for i in range(len(PLANES))] + [pairs[i] for i in sorted(picked)]


@torch.no_grad()
def evaluate_subject(subject: str, path, models: dict, settings: dict, device="cpu") -> dict:
    """{"phenotypes", "segmentation", "robustness", "representation"} rows of one test subject.

    models: {"pretrained": WholeHeartMAE, "phenotypes": Regressor, "resnet": Regressor,
    "segmentation": MaeSegmenter}. The mean guess (the paper's first row) is the phenotype
    model's training mean."""
    arrays = read_subject(path)
    image = torch.from_numpy(arrays["image"][None].astype(np.float32)).to(device)
    predictions = {"mean_guess": models["phenotypes"].mean, "resnet": models["resnet"].predict(image)[0],
                   "mae": models["phenotypes"].predict(image)[0]}
    out = {"phenotypes": phenotype_rows(subject, arrays, predictions)}

    seg_rows = []
    if arrays["labelled"].any():
        every = list(range(len(PLANES)))
        labels = models["segmentation"](image).argmax(dim=2)[0].cpu().numpy().astype(np.uint8)
        seg_rows += dice_rows(subject, "mae", labels, arrays, every)
        if "directseg" in arrays:
            seg_rows += dice_rows(subject, "directseg", arrays["directseg"], arrays, list(range(N_SAX)))
    out["segmentation"] = pd.DataFrame(seg_rows, columns=["subject", "method", "structure", "view", "dice"])

    full = models["pretrained"].represent(image)
    out["representation"] = pd.DataFrame([{"subject": subject, **{f"r{i}": float(v) for i, v in enumerate(full[0])}}])
    rows = []
    for removed in removals(subject, settings["robustness"]["pairs"], settings["seed"]):
        kept = [p for p in range(len(PLANES)) if p not in removed]
        row = {"subject": subject, "removed": "+".join(PLANES[p] for p in removed), "n_removed": len(removed),
               "cosine": float(F.cosine_similarity(models["pretrained"].represent(image, kept), full)[0])}
        for name, a, b in zip(TARGETS, models["phenotypes"].predict(image, kept)[0], predictions["mae"]):
            row[f"delta_{name}"] = float(a - b)
        rows.append(row)
    out["robustness"] = pd.DataFrame(rows)
    return out
