"""Training, weights-only checkpoints, batched prediction and training curves for the SAX U-Net.

Training is reproducible on CPU: the seed fixes initialisation, dropout,
shuffling and augmentation, and deterministic algorithms are switched on for the
duration only (the caller's setting and global RNG state are restored).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Callable

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..io.files import atomic_path
from .checkpoints import load_model, save_weights
from ..labels import SAX_LABELS
from .data import augment as augment_batch
from .data import frames_to_slices, normalise_intensity, slices_to_frames
from .resume import TrainingState, restore, snapshot
from .runtime import Precision, seeded
from .slice_store import BatchPlan, SliceStore, batches
from .unet import UNet, UNetConfig, forward_padded, seg_loss

CHECKPOINT_FORMAT = "cinerecon.unet/1"


def _logger(log) -> Callable[[str], None]:
    if log is None:
        return lambda msg: None
    if isinstance(log, logging.Logger):
        return log.info
    return log


def _array(a, dtype):
    """A numpy array of ``dtype``, or an on-disk SliceStore as it is (read batch by batch)."""
    if isinstance(a, SliceStore):
        return a
    return (a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)).astype(dtype, copy=False)


def _as_arrays(images, labels):
    """Images (N, C, H, W) and labels (N, H, W): numpy arrays (float32, int64) or SliceStores."""
    x, y = _array(images, np.float32), _array(labels, np.int64)
    if len(x.shape) != 4 or tuple(y.shape) != (x.shape[0],) + tuple(x.shape[2:]):
        raise ValueError(f"expected images (N, C, H, W) and labels (N, H, W), got {tuple(x.shape)}, {tuple(y.shape)}")
    return x, y


def _dice_counts(pred: torch.Tensor, ref: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(n_classes, 3) counts [intersection, |pred|, |ref|] to pool Dice over a whole set."""
    out = torch.zeros(n_classes, 3, dtype=torch.float64)
    for c in range(1, n_classes):
        p, r = pred == c, ref == c
        out[c] = torch.tensor([(p & r).sum().item(), p.sum().item(), r.sum().item()], dtype=torch.float64)
    return out


def _evaluate(model: torch.nn.Module, x, y, batch_size: int, device) -> tuple[float, list[float]]:
    """Mean loss and per-class Dice pooled over the set (1.0 where a class is absent from both sides)."""
    model.eval()
    n_classes = model.config.n_classes
    counts = torch.zeros(n_classes, 3, dtype=torch.float64)
    total = 0.0
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            rows = np.arange(i, min(i + batch_size, len(x)))
            xb = torch.from_numpy(np.ascontiguousarray(x[rows], dtype=np.float32)).to(device)
            yb = torch.from_numpy(np.ascontiguousarray(y[rows], dtype=np.int64)).to(device)
            logits = model(xb)
            total += seg_loss(logits, yb).item() * len(xb)
            counts += _dice_counts(logits.argmax(1).cpu(), yb.cpu(), n_classes)
    dice = [1.0 if c[1] + c[2] == 0 else float(2 * c[0] / (c[1] + c[2])) for c in counts]
    return total / len(x), dice


def train_unet(train_images, train_labels, val_images, val_labels, config: UNetConfig,
               epochs: int = 20, batch_size: int = 16, lr: float = 1e-3, seed: int = 0,
               log=None, augment: bool = True, device="cpu", state: TrainingState | None = None,
               workers: int = 0, precision: str = "fp32", deterministic: bool = True) -> tuple[UNet, list[dict]]:
    """Train a U-Net with Adam on CE + soft Dice; return the best-validation-Dice model and history.

    Images are (N, 1, H, W) float32 in [-1, 1] with H, W divisible by 2**depth,
    labels (N, H, W) integers: arrays, or on-disk SliceStores read batch by batch. The
    best epoch is the one with the highest mean foreground Dice on the validation set
    (pooled over all its pixels). ``history`` has one dict per epoch: epoch, train_loss,
    val_loss, val_dice_<LVC|LVM|RVC>, val_dice_mean, seconds. ``log`` is a
    logging.Logger, a callable taking a string, or None. ``state`` (a
    :class:`~cinerecon.models.resume.TrainingState`) saves the run when due and resumes
    a killed one; ``workers`` DataLoader processes read batches ahead. ``precision``
    (fp32 | bf16 | fp16) and ``deterministic`` as in :mod:`cinerecon.models.runtime`.
    """
    device = torch.device(device)
    emit = _logger(log)
    xt, yt = _as_arrays(train_images, train_labels)
    xv, yv = _as_arrays(val_images, val_labels)
    with seeded(seed, device, deterministic):
        model = UNet(config).to(device)
        aug_gen = torch.Generator().manual_seed(seed + 1)
        history = fit_best_epoch(model, (xt, yt), (xv, yv), config.n_classes, epochs, batch_size, lr, seed,
                                 device, emit, (lambda x, y: augment_batch(x, y, aug_gen)) if augment else None,
                                 generators={"augment": aug_gen}, state=state, workers=workers,
                                 precision=Precision(precision, device))
    return model, history


def fit_best_epoch(model: torch.nn.Module, train: tuple, val: tuple, n_classes: int, epochs: int, batch_size: int,
                   lr: float, seed: int, device, emit, transform=None, generators: dict | None = None,
                   state: TrainingState | None = None, workers: int = 0,
                   precision: Precision | None = None) -> list[dict]:
    """Adam on CE + soft Dice over (inputs, labels) (arrays, tensors or SliceStores); the model ends
    with the weights of the epoch with the highest mean foreground validation Dice, in eval mode.
    ``transform`` (inputs, labels) -> (inputs, labels) augments each training batch, drawing
    from ``generators`` (saved with the state). Returns the history (epoch, train_loss,
    val_loss, val_dice_<LVC|LVM|RVC>, val_dice_mean, seconds).

    Each epoch is a permutation seeded by (seed, epoch) (:class:`BatchPlan`); with ``state``,
    the run is saved after any step when due and a killed run resumes at its last save,
    mid-epoch included, to the same weights as an uninterrupted run. ``precision``: the
    forward pass's autocast and the backward's loss scaling (default fp32).
    """
    (xt, yt), (xv, yv) = ((_array(x, np.float32), _array(y, np.int64)) for x, y in (train, val))
    if len(xt) == 0 or len(xv) == 0:
        raise ValueError("training and validation sets must both be non-empty")
    foreground = list(range(1, n_classes))
    names = [SAX_LABELS.get(c, str(c)) for c in foreground]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    amp = precision or Precision("fp32", device)
    optimizers = {"opt": opt, **amp.state()}
    plan = BatchPlan(len(xt), batch_size, seed)
    steps = epochs * plan.steps_per_epoch
    history: list[dict] = []
    start, best, best_state, running = 0, -math.inf, None, 0.0
    saved = state.load() if state is not None else None
    if saved is not None:
        extra = restore(saved, {"model": model}, optimizers, generators)
        start, history, best, best_state, running = (saved["step"], extra["history"], extra["best"],
                                                     extra["best_state"], extra["running"])
    model.train()
    t0 = time.perf_counter()
    for step, (xb, yb) in enumerate(batches((xt, yt), plan, start, steps, workers), start=start):
        if int(yb.max()) >= n_classes or int(yb.min()) < 0:
            raise ValueError(f"labels outside 0..{n_classes - 1}")
        if transform is not None:
            xb, yb = transform(xb, yb)
        opt.zero_grad(set_to_none=True)
        with amp.autocast():
            logits = model(xb.to(device))
        loss = seg_loss(logits.float(), yb.to(device))  # the loss in float32 whatever the precision
        amp.step(loss, opt)
        running += loss.item() * len(xb)
        if (step + 1) % plan.steps_per_epoch == 0:
            epoch = (step + 1) // plan.steps_per_epoch
            val_loss, dice = _evaluate(model, xv, yv, batch_size, device)
            mean_dice = float(np.mean([dice[c] for c in foreground]))
            row = {"epoch": epoch, "train_loss": running / len(xt), "val_loss": val_loss,
                   **{f"val_dice_{n}": dice[c] for n, c in zip(names, foreground)},
                   "val_dice_mean": mean_dice, "seconds": time.perf_counter() - t0}
            history.append(row)
            emit(f"epoch {epoch}/{epochs} train_loss {row['train_loss']:.4f} val_loss {val_loss:.4f} "
                 + " ".join(f"{n} {dice[c]:.3f}" for n, c in zip(names, foreground))
                 + f" ({row['seconds']:.1f} s)")
            if mean_dice > best:
                best = mean_dice
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            running, t0 = 0.0, time.perf_counter()
            model.train()
        if state is not None:
            state.maybe_save(step + 1, lambda: snapshot(step + 1, {"model": model}, optimizers, generators,
                                                        history=history, best=best, best_state=best_state,
                                                        running=running))
    model.load_state_dict(best_state)
    model.eval()
    return history


def save_checkpoint(model: UNet, config: UNetConfig, path) -> None:
    """Write {"format", "state_dict", "config"} (tensors and plain types only) atomically,
    so that it loads with ``torch.load(weights_only=True)``: no pickled code runs on load."""
    save_weights(model, config.to_dict(), CHECKPOINT_FORMAT, path)


def load_checkpoint(path, device="cpu") -> UNet:
    """The U-Net of a :func:`save_checkpoint` file, in eval mode on ``device`` (config as ``model.config``)."""
    return load_model(path, CHECKPOINT_FORMAT, "U-Net", lambda c: UNet(UNetConfig.from_dict(c)), device)


def predict_slices(model: UNet, images, batch_size: int = 32, device=None) -> np.ndarray:
    """Labels (N, H, W) uint8 for images (N, C, H, W) of any H, W (padded to 2**depth, cropped back).

    ``device`` defaults to the model's; the model is moved there if needed and its
    train/eval mode is restored afterwards.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"expected images (N, C, H, W), got {images.shape}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    was_training = model.training
    model.eval()
    out = np.empty((images.shape[0],) + images.shape[2:], dtype=np.uint8)
    try:
        with torch.inference_mode():
            for i in range(0, len(images), batch_size):
                xb = torch.from_numpy(images[i:i + batch_size]).to(device)
                out[i:i + batch_size] = forward_padded(model, xb).argmax(1).to(torch.uint8).cpu().numpy()
    finally:
        model.train(was_training)
    return out


def predict_cine(model: UNet, image_4d, frames=None, batch_size: int = 32, device=None,
                 normalise: bool = True) -> np.ndarray:
    """Labels (X, Y, Z, len(frames)) uint8 for a raw (X, Y, Z, T) cine (all frames if None).

    The subject is normalised once, then every slice x frame goes through the
    network in batches of ``batch_size``.
    """
    image_4d = np.asarray(image_4d)
    frames = range(image_4d.shape[3]) if frames is None else frames
    img = normalise_intensity(image_4d) if normalise else image_4d.astype(np.float32)
    slices = frames_to_slices(img, frames)[:, None]
    return slices_to_frames(predict_slices(model, slices, batch_size, device), image_4d.shape[2])


def plot_history(history: list[dict], path, dpi: int = 110) -> None:
    """Loss (train/val) and validation Dice per structure against epoch, as one PNG."""
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_dice = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        ax_loss.plot(epochs, [h[key] for h in history], marker=".", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss (CE + 1 - Dice)", title="loss")
    ax_loss.legend()
    for key in [k for k in (history[0] if history else {}) if k.startswith("val_dice_") and k != "val_dice_mean"]:
        ax_dice.plot(epochs, [h[key] for h in history], marker=".", label=key.removeprefix("val_dice_"))
    ax_dice.set(xlabel="epoch", ylabel="Dice", title="validation Dice", ylim=(0, 1.02))
    if history:
        ax_dice.legend()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    fig.clear()
