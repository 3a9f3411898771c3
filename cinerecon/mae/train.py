"""The MAE's training loops: pre-training (phase I), phenotype and segmentation fine-tuning
(phase II) and the ResNet comparison, all AdamW with a cosine schedule (the paper: weight
decay 0.05, lr 1e-4, 1e-5 for fine-tuning) and resumable (cinerecon.models.resume).

The schedule is a pure function of the step and batches come from a seeded plan, so a
resumed run ends with the weights of an uninterrupted one (CPU).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cinerecon.mae.data import MaeData
from cinerecon.models.resume import TrainingState, restore, snapshot
from cinerecon.models.runtime import seeded
from cinerecon.models.slice_store import BatchPlan, batches

log = logging.getLogger(__name__)


def cosine_lr(lr: float, step: int, steps: int) -> float:
    """The learning rate of (1-based) `step` of `steps`: lr at the start, 0 after the last."""
    return 0.5 * lr * (1 + math.cos(math.pi * (step - 1) / max(1, steps)))


def fit(name: str, build: Callable[[], nn.Module], batch_loss: Callable, arrays: tuple, steps: int, batch_size: int,
        lr: float, weight_decay: float, seed: int, device, state: TrainingState | None = None,
        deterministic: bool = True, workers: int = 0, log_every: int = 25):
    """Train build() for `steps` AdamW steps on batches of rows of `arrays` (aligned, indexable
    by a row list: numpy arrays or `MaeData.array` views), read ahead by `workers` processes;
    batch_loss(model, batch tensors, gen) -> {"total": ..}. Returns (model in eval mode, history)."""
    history: list[dict] = []
    n_items = len(arrays[0])
    with seeded(seed, device, deterministic):
        model = build().to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        gen = torch.Generator().manual_seed(seed)
        plan = BatchPlan(n_items, min(batch_size, n_items), seed)
        start, sums = 0, {}
        saved = state.load() if state is not None else None
        if saved is not None:
            extra = restore(saved, {"model": model}, {"opt": opt}, {"masking": gen})
            start, history, sums = saved["step"], extra["history"], extra["sums"]
        model.train()
        t0 = time.perf_counter()
        cuda = torch.device(device).type == "cuda"
        for step, tensors in enumerate(batches(arrays, plan, start, steps, workers, pin_memory=cuda), start=start + 1):
            for group in opt.param_groups:
                group["lr"] = cosine_lr(lr, step, steps)
            losses = batch_loss(model, [t.to(device, non_blocking=True) for t in tensors], gen)
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            opt.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            sums["count"] = sums.get("count", 0) + 1
            if step % log_every == 0 or step == steps:
                count = sums.pop("count")
                row = {"step": step, **{k: v / count for k, v in sums.items()},
                       "lr": cosine_lr(lr, step, steps), "seconds": time.perf_counter() - t0}
                history.append(row)
                log.info("%s step %d/%d loss %.4f (%.1f s)", name, step, steps, row["total"], row["seconds"])
                sums = {}
            if state is not None:
                state.maybe_save(step, lambda: snapshot(step, {"model": model}, {"opt": opt}, {"masking": gen},
                                                        history=history, sums=sums))
    model.eval()
    return model, history


def pretraining(data: MaeData):
    """(arrays, batch_loss) of phase I: masked reconstruction of the images."""
    def loss(model, batch, gen):
        return {"total": model.loss(batch[0].float(), gen)}
    return (data.array("image"),), loss


def regression(data: MaeData, mean: np.ndarray, std: np.ndarray):
    """(arrays, batch_loss): MSE over the z-scored targets a subject has (NaN: unknown, e.g.
    no atrial labels)."""
    z = ((data.targets - mean) / std).astype(np.float32)

    def loss(model, batch, gen):
        image, target = batch
        known = torch.isfinite(target)
        error = (model(image.float()) - torch.nan_to_num(target)) ** 2
        return {"total": (error * known).sum() / known.sum().clamp(min=1)}
    return (data.array("image"), z), loss


def partial_label_loss(logits: torch.Tensor, labels: torch.Tensor, labelled: torch.Tensor,
                       carried: torch.Tensor) -> dict:
    """Cross-entropy + soft Dice over the labelled (plane, frame) pairs, where each plane's
    labels draw only its `carried` classes: a class a plane can hold but its labels do not
    draw (the 2ch view's RA, UK Biobank's LV on LAX) is merged into the background, so the
    network is never taught that an undrawn structure is background.

    logits (B, S, C, T, H, W); labels (B, S, T, H, W) long; labelled (B, S, T) bool;
    carried (B, S, C) bool.
    """
    logp = F.log_softmax(logits.float(), dim=2)
    merge = ~carried
    merge[..., 0] = True  # background absorbs every undrawn class
    merged_bg = torch.logsumexp(logp.masked_fill(~merge[..., None, None, None], -torch.inf), dim=2)
    picked = logp.gather(2, labels[:, :, None]).squeeze(2)
    log_likelihood = torch.where(labels == 0, merged_bg, picked)
    weight = labelled[..., None, None].float().expand_as(log_likelihood)
    n = weight.sum().clamp(min=1)
    ce = -(log_likelihood * weight).sum() / n
    probs = logp.exp()
    dice_terms = []
    for k in range(1, logits.shape[2]):
        on = (carried[..., k][..., None] & labelled).float()[..., None, None]  # (B, S, T, 1, 1)
        if on.sum() == 0:
            continue
        p, t = probs[:, :, k] * on, (labels == k).float() * on
        dice_terms.append(1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1))
    dice = torch.stack(dice_terms).mean() if dice_terms else torch.zeros((), device=logits.device)
    return {"total": ce + dice, "ce": ce, "dice": dice}


def segmentation(data: MaeData):
    """(arrays, batch_loss) of the segmentation head: partial-label loss on the labelled frames."""
    def loss(model, batch, gen):
        image, labels, labelled, carried = batch
        return partial_label_loss(model(image.float()), labels.long(), labelled, carried)
    return tuple(data.array(k) for k in ("image", "labels", "labelled", "carried")), loss


def load_encoder(model: nn.Module, pretrained: nn.Module) -> None:
    """Phase II starts from the pre-trained encoder (every weight of it)."""
    model.encoder.load_state_dict(pretrained.encoder.state_dict())
