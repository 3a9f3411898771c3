"""Training, weights-only checkpoints, batched prediction and training curves for the SAX U-Net.

Training is reproducible on CPU: the seed fixes initialisation, dropout,
shuffling and augmentation, and deterministic algorithms are switched on for the
duration only (the caller's setting and global RNG state are restored).
"""

from __future__ import annotations

import contextlib
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
from .unet import UNet, UNetConfig, forward_padded, seg_loss

CHECKPOINT_FORMAT = "cinerecon.unet/1"


@contextlib.contextmanager
def _deterministic(seed: int, device: torch.device):
    """Seed torch and force deterministic kernels inside; restore the previous setting and RNG after.

    On CUDA some kernels (max-pool backward) have no deterministic version, so
    there it only warns instead of raising.
    """
    prev, prev_warn = torch.are_deterministic_algorithms_enabled(), \
        torch.is_deterministic_algorithms_warn_only_enabled()
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(prev, warn_only=prev_warn)


def _logger(log) -> Callable[[str], None]:
    if log is None:
        return lambda msg: None
    if isinstance(log, logging.Logger):
        return log.info
    return log


def _as_tensors(images, labels) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if x.ndim != 4 or y.shape != (x.shape[0],) + tuple(x.shape[2:]):
        raise ValueError(f"expected images (N, C, H, W) and labels (N, H, W), got {tuple(x.shape)}, {tuple(y.shape)}")
    return x, y


def _dice_counts(pred: torch.Tensor, ref: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(n_classes, 3) counts [intersection, |pred|, |ref|] to pool Dice over a whole set."""
    out = torch.zeros(n_classes, 3, dtype=torch.float64)
    for c in range(1, n_classes):
        p, r = pred == c, ref == c
        out[c] = torch.tensor([(p & r).sum().item(), p.sum().item(), r.sum().item()], dtype=torch.float64)
    return out


def _evaluate(model: UNet, x: torch.Tensor, y: torch.Tensor, batch_size: int, device) -> tuple[float, list[float]]:
    """Mean loss and per-class Dice pooled over the set (1.0 where a class is absent from both sides)."""
    model.eval()
    n_classes = model.config.n_classes
    counts = torch.zeros(n_classes, 3, dtype=torch.float64)
    total = 0.0
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
            logits = model(xb)
            total += seg_loss(logits, yb).item() * len(xb)
            counts += _dice_counts(logits.argmax(1).cpu(), yb.cpu(), n_classes)
    dice = [1.0 if c[1] + c[2] == 0 else float(2 * c[0] / (c[1] + c[2])) for c in counts]
    return total / len(x), dice


def train_unet(train_images, train_labels, val_images, val_labels, config: UNetConfig,
               epochs: int = 20, batch_size: int = 16, lr: float = 1e-3, seed: int = 0,
               log=None, augment: bool = True, device="cpu") -> tuple[UNet, list[dict]]:
    """Train a U-Net with Adam on CE + soft Dice; return the best-validation-Dice model and history.

    Images are (N, 1, H, W) float32 in [-1, 1] with H, W divisible by 2**depth,
    labels (N, H, W) integers. The best epoch is the one with the highest mean
    foreground Dice on the validation set (pooled over all its pixels). ``history``
    has one dict per epoch: epoch, train_loss, val_loss, val_dice_<LVC|LVM|RVC>,
    val_dice_mean, seconds. ``log`` is a logging.Logger, a callable taking a
    string, or None.
    """
    device = torch.device(device)
    emit = _logger(log)
    xt, yt = _as_tensors(train_images, train_labels)
    xv, yv = _as_tensors(val_images, val_labels)
    with _deterministic(seed, device):
        model = UNet(config).to(device)
        aug_gen = torch.Generator().manual_seed(seed + 1)
        history = fit_best_epoch(model, (xt, yt), (xv, yv), config.n_classes, epochs, batch_size, lr, seed,
                                 device, emit, (lambda x, y: augment_batch(x, y, aug_gen)) if augment else None)
    return model, history


def fit_best_epoch(model: torch.nn.Module, train: tuple, val: tuple, n_classes: int, epochs: int, batch_size: int,
                   lr: float, seed: int, device, emit, transform=None) -> list[dict]:
    """Adam on CE + soft Dice over (inputs, labels) tensors; the model ends with the weights of
    the epoch with the highest mean foreground validation Dice, in eval mode. ``transform``
    (inputs, labels) -> (inputs, labels) augments each training batch. Returns the history
    (epoch, train_loss, val_loss, val_dice_<LVC|LVM|RVC>, val_dice_mean, seconds)."""
    (xt, yt), (xv, yv) = train, val
    if len(xt) == 0 or len(xv) == 0:
        raise ValueError("training and validation sets must both be non-empty")
    if int(max(yt.max(), yv.max())) >= n_classes:
        raise ValueError(f"labels exceed n_classes - 1 = {n_classes - 1}")
    foreground = list(range(1, n_classes))
    names = [SAX_LABELS.get(c, str(c)) for c in foreground]
    history: list[dict] = []
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    shuffle = torch.Generator().manual_seed(seed)
    best, best_state = -math.inf, None
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        running = 0.0
        for idx in torch.randperm(len(xt), generator=shuffle).split(batch_size):
            xb, yb = xt[idx], yt[idx]
            if transform is not None:
                xb, yb = transform(xb, yb)
            opt.zero_grad(set_to_none=True)
            loss = seg_loss(model(xb.to(device)), yb.to(device))
            loss.backward()
            opt.step()
            running += loss.item() * len(idx)
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
