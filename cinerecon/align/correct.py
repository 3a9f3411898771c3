"""Estimate shifts with a chosen method, with graceful degradation, and apply them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from cinerecon.align.estimate import AlignmentProblem, AlignSettings, frame_subset
from cinerecon.align.region import heart_regions
from cinerecon.labels import LVC, LVM, RVC
from cinerecon.phenotypes import ed_es_frames

log = logging.getLogger(__name__)
LABEL_CHANNELS = (LVC, LVM, RVC)


def _onehot(labels: np.ndarray, sigma_px: float = 1.0) -> np.ndarray:
    """(..., F) labels -> (..., F, C) smoothed indicator channels of LVC, LVM, RVC."""
    channels = np.stack([(labels == c).astype(np.float32) for c in LABEL_CHANNELS], axis=-1)
    sigma = (sigma_px, sigma_px) + (0,) * (channels.ndim - 2)
    return ndimage.gaussian_filter(channels, sigma=sigma)


def _phase_frames(frames: np.ndarray, n_source: int, n_target: int) -> np.ndarray:
    return (np.round(frames * n_target / n_source).astype(int)) % n_target


@dataclass
class SliceShifts:
    """Per-slice shifts (Z, 2) mm along the SAX i, j axes, how well each is known, warnings.

    sd_mm: the estimate's standard deviation along its worst direction (NaN where nothing
    was estimated); confidence: high (sd <= 0.5 mm), medium (<= 1 mm), low (the data
    barely determine it, so it leans on the stack's prior), prior (no data reach the
    slice: the stack's median shift), none (not estimated: method none, no LAX view, or
    the stack left as acquired).
    """

    shifts: np.ndarray
    sd_mm: np.ndarray
    confidence: list[str]
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def unestimated(cls, n_slices: int, warnings: list[str]) -> "SliceShifts":
        return cls(np.zeros((n_slices, 2)), np.full(n_slices, np.nan), ["none"] * n_slices, warnings)


def confidence_level(sd_mm: float, has_data: bool = True) -> str:
    if not has_data:
        return "prior"
    return "high" if sd_mm <= 0.5 else "medium" if sd_mm <= 1.0 else "low"


def estimate_shifts(method: str, sax: np.ndarray, sax_affine: np.ndarray, laxes: dict,
                    sax_labels: np.ndarray | None = None, lax_labels: dict | None = None,
                    settings: AlignSettings | None = None, frames=None) -> SliceShifts:
    """Per-slice shifts of a SAX stack against its LAX views, with their uncertainty.

    laxes: {view: (cine (X, Y, 1, T), affine)}; lax_labels: {view: labels (X, Y, 1, T)}.
    A slice that truly moved by d is corrected by resampling it at p + d (apply_shifts).
    """
    settings = settings or AlignSettings()
    n_slices, n_frames = sax.shape[2], sax.shape[3]
    warnings: list[str] = []
    if method == "none":
        return SliceShifts.unestimated(n_slices, warnings)
    if not laxes:
        warnings.append("no LAX view available: SAX slices left uncorrected")
        return SliceShifts.unestimated(n_slices, warnings)
    if len(laxes) == 1:
        warnings.append(f"only one LAX view ({next(iter(laxes))}): each slice is constrained "
                        "along one direction only; the other is held by the prior")
    if method == "intensity":
        frames = frame_subset(n_frames, settings.max_frames) if frames is None else np.asarray(frames)
        sax_ch = sax[:, :, :, frames][..., None].astype(np.float32)
        lax_ch = {v: (img[:, :, 0, _phase_frames(frames, n_frames, img.shape[3])][..., None], aff)
                  for v, (img, aff) in laxes.items()}
    elif method == "labels":
        if sax_labels is None or not lax_labels:
            raise ValueError("label-based alignment needs SAX and LAX label maps")
        if frames is None:  # ED and ES: the phases manual labels exist for
            frames = sorted(ed_es_frames(sax_labels, sax_affine).values())
        frames = np.asarray(frames)
        sax_ch = _onehot(sax_labels[:, :, :, frames])
        lax_ch = {v: (_onehot(lax_labels[v][:, :, 0, _phase_frames(frames, n_frames, lax_labels[v].shape[3])]),
                      laxes[v][1]) for v in laxes if v in lax_labels}
    else:
        raise ValueError(f"unknown alignment method {method!r}")
    regions = None
    if method == "intensity" and settings.heart_margin_mm is not None:
        regions = heart_regions(sax, np.linalg.norm(sax_affine[:3, :2], axis=0), settings.heart_margin_mm)
        if not regions.any():
            warnings.append("nothing in the SAX cine moves above the noise: profiles compared over "
                            f"{settings.radius_mm:.0f} mm around the stack centre, not just the heart")
            regions = None
    problem = AlignmentProblem(sax_ch, sax_affine, lax_ch, method, settings, regions)
    for k in range(n_slices):
        if problem.flat[k]:
            warnings.append(f"SAX slice {k} has no signal: shift set to the stack's median")
        elif not problem.lines[k]:
            warnings.append(f"SAX slice {k} meets no LAX view inside the heart region: "
                            "shift set to the stack's median")
    shifts, sd, has_data = problem.with_prior(problem.solve())
    gain = problem.relative_gain(shifts)
    if gain < settings.min_relative_gain:
        # fitting noise would only add jitter to a stack that is already aligned
        warnings.append(f"estimated shifts lower the mismatch by only {100 * gain:.1f}% "
                        f"(< {100 * settings.min_relative_gain:.0f}%): stack left as acquired")
        result = SliceShifts.unestimated(n_slices, warnings)
    else:
        result = SliceShifts(shifts, sd, [confidence_level(x, h) for x, h in zip(sd, has_data)], warnings)
    for w in warnings:
        log.warning(w)
    return result


def apply_shifts(stack: np.ndarray, shifts_mm: np.ndarray, spacing_xy, labels: bool = False) -> np.ndarray:
    """Resample each slice of an (X, Y, Z, ...) stack so it shows the anatomy at its affine.

    Slice k's pixel p takes the value the uncorrected slice had at p + d_k: images by
    cubic interpolation, labels by linear interpolation of one-hot maps and argmax.
    Each 2D frame is shifted on its own: the same result as shifting the slice's (X, Y, T)
    array at once, where scipy would interpolate along T too (4x the work for cubic, with
    weights that are 1 at the frame itself).
    """
    out = stack.copy()
    spacing_xy = np.asarray(spacing_xy, dtype=float)
    for k in range(stack.shape[2]):
        shift = -np.asarray(shifts_mm[k], dtype=float) / spacing_xy
        if not shift.any():  # interpolation at the pixels themselves returns them
            continue
        for frame in np.ndindex(stack.shape[3:]):
            at = (slice(None), slice(None), k) + frame
            out[at] = (_shift_labels(stack[at], shift) if labels
                       else _shift_image(stack[at], shift, stack.dtype))
    return out


def _shift_image(frame: np.ndarray, shift: np.ndarray, dtype) -> np.ndarray:
    moved = ndimage.shift(frame.astype(np.float64), shift, order=3, mode="nearest")
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        moved = np.clip(np.round(moved), info.min, info.max)
    return moved


def _shift_labels(frame: np.ndarray, shift: np.ndarray) -> np.ndarray:
    values = np.unique(frame)
    if len(values) == 1:  # an unlabelled (all background) frame stays as it is
        return frame
    best = np.full(frame.shape, -1.0)
    res = np.zeros(frame.shape, dtype=frame.dtype)
    for v in values:
        w = ndimage.shift((frame == v).astype(np.float32), shift, order=1, mode="nearest")
        better = w > best
        res[better], best[better] = v, w[better]
    return res
