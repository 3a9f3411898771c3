"""Training slices from cine subjects: per-subject normalisation, slice extraction, cheap augmentation.

Slices are ordered frame-major (all Z slices of the first requested frame, then
the next frame), so ``(N, X, Y) -> (F, Z, X, Y)`` is a plain reshape.
"""

from __future__ import annotations

import numpy as np
import torch

from ..labels import SAX_LABELS


def normalise_intensity(volume, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Map the subject's [p_low, p_high] percentile range to [-1, 1] and clip; float32.

    Per subject (the whole 4D cine, not per slice), so relative brightness between
    slices and frames survives and scanner/coil gain differences do not. A constant
    volume maps to all zeros.
    """
    v = np.asarray(volume, dtype=np.float32)
    return apply_window(v, intensity_window(v, low, high))


def intensity_window(volume, low: float = 1.0, high: float = 99.0) -> tuple[float, float]:
    """The volume's [p_low, p_high] percentiles (what normalise_intensity maps to [-1, 1])."""
    v = np.asarray(volume, dtype=np.float32)
    if not np.all(np.isfinite(v)):
        raise ValueError("volume contains non-finite values")
    lo, hi = np.percentile(v, [low, high])
    return float(lo), float(hi)


def apply_window(volume, window: tuple[float, float]) -> np.ndarray:
    """[lo, hi] -> [-1, 1], clipped, float32: another volume of the same scanner through a
    window taken from one (a paired 3D acquisition through its stack's)."""
    lo, hi = window
    v = np.asarray(volume, dtype=np.float32)
    if hi <= lo:
        return np.zeros_like(v)
    out = (v - np.float32(lo)) * np.float32(2.0 / (hi - lo)) - np.float32(1.0)
    return np.clip(out, -1.0, 1.0, out=out).astype(np.float32, copy=False)


def frames_to_slices(array_4d: np.ndarray, frames) -> np.ndarray:
    """(X, Y, Z, T) -> (len(frames) * Z, X, Y), frame-major."""
    a = np.asarray(array_4d)
    if a.ndim != 4:
        raise ValueError(f"expected a 4D (X, Y, Z, T) array, got shape {a.shape}")
    frames = list(frames)
    bad = [f for f in frames if not -a.shape[3] <= f < a.shape[3]]
    if bad:
        raise ValueError(f"frames {bad} out of range for T = {a.shape[3]}")
    sel = a[..., frames]                                   # (X, Y, Z, F)
    return np.ascontiguousarray(sel.transpose(3, 2, 0, 1)).reshape(-1, a.shape[0], a.shape[1])


def slices_to_frames(slices: np.ndarray, n_z: int) -> np.ndarray:
    """Inverse of :func:`frames_to_slices`: (F * Z, X, Y) -> (X, Y, Z, F)."""
    s = np.asarray(slices)
    return s.reshape(-1, n_z, s.shape[1], s.shape[2]).transpose(2, 3, 1, 0)


def slices_from_subject(image_4d, labels_4d, frames, skip_empty: bool = False,
                        normalise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 1, X, Y) float32 in [-1, 1] and labels (N, X, Y) int64 for the given frames (ED/ES).

    ``skip_empty`` drops slices whose label is all background (apex/base beyond
    the heart), which otherwise dominate a small training set.
    """
    image_4d = np.asarray(image_4d)
    labels_4d = np.asarray(labels_4d)
    if image_4d.shape != labels_4d.shape:
        raise ValueError(f"image {image_4d.shape} and labels {labels_4d.shape} differ in shape")
    if labels_4d.size and (labels_4d.min() < 0 or labels_4d.max() > max(SAX_LABELS)):
        raise ValueError(f"labels outside 0..{max(SAX_LABELS)} (SAX convention)")
    img = normalise_intensity(image_4d) if normalise else image_4d.astype(np.float32)
    images = frames_to_slices(img, frames)[:, None]
    labels = frames_to_slices(labels_4d, frames).astype(np.int64)
    if skip_empty:
        keep = labels.reshape(len(labels), -1).any(axis=1)
        images, labels = images[keep], labels[keep]
    return images, labels


def augment(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
            scale: float = 0.1, shift: float = 0.1, max_translation: int = 4,
            fill: float = -1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample intensity scale ``1 ± scale``, offset ``± shift`` and integer translation of up to
    ``max_translation`` pixels; all draws come from ``generator`` (a CPU torch.Generator).

    No flips or 90° rotations: SAX slices share one orientation (RV on one side),
    and the network may rely on it. Translated-in pixels are background: label 0 and
    image ``fill`` (-1, the bottom of the model range; 0 would be mid-grey).
    """
    b = images.shape[0]
    s = 1.0 + (torch.rand(b, generator=generator) * 2 - 1) * scale
    o = (torch.rand(b, generator=generator) * 2 - 1) * shift
    d = torch.randint(-max_translation, max_translation + 1, (b, 2), generator=generator)
    s, o = s.to(images), o.to(images)
    out = (images * s.view(-1, 1, 1, 1) + o.view(-1, 1, 1, 1)).clamp(-1.0, 1.0)
    img_t = torch.full_like(out, fill)
    lab_t = torch.zeros_like(labels)
    h, w = images.shape[-2:]
    for i, (dy, dx) in enumerate(d.tolist()):
        if abs(dy) >= h or abs(dx) >= w:
            continue  # shifted entirely out of view: all background
        src_r, dst_r = slice(max(0, -dy), h - max(0, dy)), slice(max(0, dy), h - max(0, -dy))
        src_c, dst_c = slice(max(0, -dx), w - max(0, dx)), slice(max(0, dx), w - max(0, -dx))
        img_t[i, :, dst_r, dst_c] = out[i, :, src_r, src_c]
        lab_t[i, dst_r, dst_c] = labels[i, src_r, src_c]
    return img_t, lab_t
