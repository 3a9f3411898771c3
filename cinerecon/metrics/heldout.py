"""Held-out-slice evaluation: drop an acquired SAX slice, rebuild it from its neighbours.

Every interior slice j (1 .. Z-2) of the ED and ES stacks is, in turn, "missing": a method
sees slices j-1 and j+1 only and produces the image and labels half way between them
(t = 0.5, which is slice j's position on an equally spaced stack). The result is compared
with the acquired slice j and its manual labels: PSNR/SSIM of the image (both in the
model range [-1, 1]) and 2D Dice per structure. This measures interpolation quality on
real data, where no high-resolution ground truth exists (DeepRecon and DMCVR both
reconstruct between slices; the linear baseline is the reference).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cinerecon.labels import SAX_LABELS
from cinerecon.metrics.image import psnr, ssim
from cinerecon.metrics.overlap import dice

HELDOUT_T = 0.5
HELDOUT_COLUMNS = ["subject", "method", "phase", "slice", "psnr", "ssim"] + [f"dice_{n}" for n in SAX_LABELS.values()]


def interior_slices(n_slices: int) -> list[int]:
    """Slices that have a neighbour on each side, i.e. that can be held out."""
    return list(range(1, n_slices - 1))


def neighbour_midpoints(stack, combine) -> "np.ndarray":
    """combine(stack[j-1], stack[j+1], 0.5) for every interior j, batched: (Z-2, ...).

    ``stack`` is (Z, ...) per-slice codes or images; ``combine(a, b, t)`` takes batches a, b
    and a (N,) tensor/array of fractions (lerp, slerp, ...).
    """
    z = interior_slices(len(stack))
    if not z:
        return stack[:0]
    below, above = stack[[j - 1 for j in z]], stack[[j + 1 for j in z]]
    t = np.full(len(z), HELDOUT_T)
    if not isinstance(stack, np.ndarray):  # a torch tensor
        import torch

        t = torch.as_tensor(t, dtype=stack.dtype, device=stack.device)
    return combine(below, above, t)


def heldout_rows(subject: str, method: str, phase: str, images, labels, real_images, real_labels) -> pd.DataFrame:
    """One row per interior slice: PSNR, SSIM and Dice per structure of the rebuilt slice.

    images/labels: (Z-2, X, Y) rebuilt interior slices in slice order; real_images,
    real_labels: the acquired (Z, X, Y) stack of that phase (images in [-1, 1]).
    """
    z = interior_slices(len(real_images))
    if len(images) != len(z) or len(labels) != len(z):
        raise ValueError(f"{len(images)} rebuilt slices for {len(z)} interior slices")
    rows = []
    for i, j in enumerate(z):
        row = {"subject": subject, "method": method, "phase": phase, "slice": j,
               "psnr": psnr(images[i], real_images[j], data_range=2.0),
               "ssim": ssim(images[i], real_images[j], data_range=2.0)}
        for value, name in SAX_LABELS.items():
            pred, ref = labels[i] == value, real_labels[j] == value
            # a structure absent from both (RV at the apex, ...) is no evidence either way
            row[f"dice_{name}"] = dice(pred, ref) if pred.any() or ref.any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=HELDOUT_COLUMNS)


def heldout_summary(rows: pd.DataFrame, method_order=None) -> pd.DataFrame:
    """Per method: slices evaluated, mean and std of PSNR, SSIM and Dice per structure (Dice
    over the slices where the structure is present in the prediction or the labels)."""
    metrics = ["psnr", "ssim"] + [f"dice_{n}" for n in SAX_LABELS.values()]
    summary = rows.groupby("method")[metrics].agg(["mean", "std"])
    summary.columns = [f"{m}_{stat}" for m, stat in summary.columns]
    summary.insert(0, "slices", rows.groupby("method").size())
    summary = summary.reset_index()
    if method_order:
        rank = {m: i for i, m in enumerate(method_order)}
        summary = summary.sort_values("method", key=lambda s: s.map(lambda m: rank.get(m, len(rank))))
    return summary.reset_index(drop=True)
