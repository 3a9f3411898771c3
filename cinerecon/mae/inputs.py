"""The whole-heart MAE's input: per subject, 6 SAX slices and the 3 LAX views, every frame,
cropped to one size, in one file (Zhang et al. 2024, Section 3; the authors' code for what
the paper leaves out).

- SAX slices: the LV base is the first slice, from the base, whose ED segmentation has LV
  blood pool; the 6 slices start 2 below it (WholeHeartRL's `z_seg_start = first + 2`) and
  slide apically-to-basally to stay in the stack. The segmentation is the manual one, else
  the U-Net's. Which end of the stack is the base is read from the LV, not assumed: the
  basal half of the LV's slices holds more blood pool than the tapering apical half.
- Planes are ordered SAX base -> apex, then 2ch, 3ch, 4ch (the plane index enters the
  position embedding).
- Frames: `n_frames` picked evenly over the cine (the paper: all 50 of 50), each frame the
  manual labels draw (ED, ES) put in place of the nearest (`snap_frames`).
- In-plane: each plane centre-cropped or padded (with the background value) to `size`
  pixels, then averaged over `downsample` x `downsample` blocks (the demo's 96 px -> 48).
- Intensity: each view file normalised on its own (1st-99th percentile -> [-1, 1]), so a
  LAX series scaled differently from the SAX stack by its scanner still lands in range.
- Labels, where the subject has them, in pipeline values on the same grid (the block's
  centre pixel); `labelled` says which (plane, frame) pairs carry labels and `carried`
  which classes each plane's labels draw (UK Biobank: SAX at ED and ES; 2ch LA; 4ch LA and
  RA; no 3ch), so training and scoring never read an absent label as background.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cinerecon.io.nifti import InputError, load_nifti
from cinerecon.labels import LA, LVC, LVM, RA, RVC
from cinerecon.layout import LAX_VIEWS
from cinerecon.models.data import normalise_intensity
from cinerecon.phenotypes.ventricular import labelled_frames

N_SAX = 6
PLANES = tuple(f"sa_{i}" for i in range(N_SAX)) + LAX_VIEWS
N_CLASSES = 6  # 0 background, LVC, LVM, RVC, LA, RA (one softmax; each plane allows its own)
SAX_CLASSES, LAX_CLASSES = (0, LVC, LVM, RVC), (0, LA, RA)
BASE_OFFSET = 2  # slices below the first LV slice (the authors' code)


@dataclass(frozen=True)
class InputSettings:
    size: int = 128          # pixels per side after the crop
    downsample: int = 1      # block-average factor after the crop
    n_frames: int = 50       # frames kept

    def __post_init__(self):
        if self.size % self.downsample:
            raise ValueError(f"mae.size {self.size} is not a multiple of mae.downsample {self.downsample}")

    @classmethod
    def from_dict(cls, d: dict) -> "InputSettings":
        return cls(**{k: int(d[k]) for k in ("size", "downsample", "n_frames") if k in d})

    @property
    def pixels(self) -> int:
        return self.size // self.downsample


def lv_base_slices(lv_area: np.ndarray, n: int = N_SAX, offset: int = BASE_OFFSET) -> list[int]:
    """The n slice indices (base -> apex) from the LV blood-pool area per slice at ED."""
    z = len(lv_area)
    if z < n:
        raise ValueError(f"the SAX stack has {z} slices; the MAE takes {n}")
    present = np.flatnonzero(lv_area > 0)
    if present.size == 0:
        raise ValueError("no LV blood pool at ED in any SAX slice, so no LV base")
    lo, hi = int(present[0]), int(present[-1])
    half = (hi - lo + 1) // 2
    from_top = lv_area[lo:lo + half].sum() >= lv_area[hi - half + 1:hi + 1].sum()
    if from_top:  # slice 0 is basal (UK Biobank's order)
        start = min(lo + offset, z - n)
        return list(range(start, start + n))
    start = max(hi - offset, n - 1)
    return list(range(start, start - n, -1))


def frame_indices(n_available: int, n_frames: int) -> np.ndarray:
    """n_frames frames spread evenly over the cine, frame 0 (ED) first."""
    return np.floor(np.arange(n_frames) * n_available / n_frames).astype(int)


def snap_frames(frames: np.ndarray, wanted: list) -> np.ndarray:
    """`frames` with each labelled frame of each group (in order: the SAX labels', then each
    LAX view's) that no kept frame of the group stands for put in place of the nearest kept
    frame not already taken. UK Biobank labels two frames of 50, and every 5th frame would
    miss ES; densely labelled cines change nothing. A frame moves by at most half the
    stride, so frames stay increasing."""
    frames, taken = frames.copy(), np.zeros(len(frames), bool)
    half = max(1, int(np.diff(frames).max(initial=1))) / 2
    for group in wanted:
        labelled = set(int(w) for w in group)
        for w in sorted(labelled):
            near = np.abs(frames - w) <= half
            standing = [j for j in np.flatnonzero(near) if int(frames[j]) in labelled]
            if standing:  # a kept frame of this group's labels is within half a stride
                taken[standing] = True
                continue
            free = np.flatnonzero(near & ~taken)
            if free.size:
                j = free[np.argmin(np.abs(frames[free] - w))]
                frames[j], taken[j] = w, True
    if np.any(np.diff(frames) <= 0):  # cannot happen with the half-stride rule; never silently reorder
        raise AssertionError(f"frames {frames} not increasing")
    return frames


def fit_plane(a: np.ndarray, size: int, fill) -> np.ndarray:
    """(..., X, Y) centre-cropped or padded with `fill` to (..., size, size)."""
    out = np.full(a.shape[:-2] + (size, size), fill, dtype=a.dtype)
    src, dst = [], []
    for n in a.shape[-2:]:
        if n >= size:
            start = (n - size) // 2
            src.append(slice(start, start + size))
            dst.append(slice(0, size))
        else:
            start = (size - n) // 2
            src.append(slice(0, n))
            dst.append(slice(start, start + n))
    out[(..., *dst)] = a[(..., *src)]
    return out


def block_mean(a: np.ndarray, f: int) -> np.ndarray:
    if f == 1:
        return a
    *lead, h, w = a.shape
    return a.reshape(*lead, h // f, f, w // f, f).mean(axis=(-3, -1))


def block_centre(a: np.ndarray, f: int) -> np.ndarray:
    return a if f == 1 else a[..., f // 2::f, f // 2::f]


def _planes(cine: np.ndarray, slices: list[int], frames: np.ndarray) -> np.ndarray:
    """(X, Y, Z, T) -> (len(slices), len(frames), X, Y)."""
    return np.ascontiguousarray(cine[:, :, slices][..., frames].transpose(2, 3, 0, 1))


def build_inputs(subject: str, files: dict, settings: InputSettings, lax_structures: dict | None = None) -> dict:
    """The MAE tensors of one subject.

    files: {"sa": aligned SAX cine, "base_labels": the label cine that finds the LV base
    (manual, else the U-Net's), "la_2ch"/"la_3ch"/"la_4ch": cropped LAX cines; optionally
    "label_sa", "label_la_*" (manual labels) and "seg_sa" (the U-Net's, for its comparison
    row)}. lax_structures: {view: {value: name}} the subject's LAX labels carry.
    Returns arrays: image (9, T, P, P) float16 in [-1, 1], labels (9, T, P, P) uint8,
    labelled (9, T) bool, carried (9, 6) bool, directseg (6, T, P, P) uint8 or absent,
    sax_slices (6,), frames (T,).
    """
    s = settings
    sa, _, _ = load_nifti(files["sa"], subject)
    base, _, _ = load_nifti(files["base_labels"], subject)
    if base.shape != sa.shape:
        raise InputError(subject, files["base_labels"], f"labels {base.shape} differ from the SAX cine {sa.shape}")
    n_available = sa.shape[3]
    if n_available < s.n_frames:
        raise InputError(subject, files["sa"], f"{n_available} frames; the MAE takes {s.n_frames}")
    try:
        slices = lv_base_slices((base[..., 0] == LVC).sum(axis=(0, 1)))
    except ValueError as exc:
        raise InputError(subject, files["base_labels"], str(exc)) from None
    cines = {}
    for view in LAX_VIEWS:
        cines[view], _, _ = load_nifti(files[view], subject)
        if cines[view].shape[3] != n_available:
            raise InputError(subject, files[view], f"{cines[view].shape[3]} frames, the SAX cine {n_available}")
    manual = {"sa": load_nifti(files["label_sa"], subject)[0]} if "label_sa" in files else {}
    lax_classes = {}
    for view in LAX_VIEWS:
        lax_classes[view] = [v for v in (lax_structures or {}).get(view, {}) if v in LAX_CLASSES]
        if f"label_{view}" in files and lax_classes[view]:
            manual[view] = load_nifti(files[f"label_{view}"], subject)[0]
    drawn = {view: labelled_frames(labels) for view, labels in manual.items()}
    frames = snap_frames(frame_indices(n_available, s.n_frames), list(drawn.values()))

    def fitted(a, fill, labels=False):
        a = fit_plane(a, s.size, fill)
        return block_centre(a, s.downsample) if labels else block_mean(a, s.downsample)

    images = [fitted(_planes(normalise_intensity(sa), slices, frames), -1.0)]
    images += [fitted(_planes(normalise_intensity(cines[view]), [0], frames), -1.0) for view in LAX_VIEWS]
    n_t, p = len(frames), s.pixels
    out = {"image": np.concatenate(images).astype(np.float16), "sax_slices": np.array(slices),
           "frames": frames, "labels": np.zeros((len(PLANES), n_t, p, p), np.uint8),
           "labelled": np.zeros((len(PLANES), n_t), bool), "carried": np.zeros((len(PLANES), N_CLASSES), bool)}
    if "sa" in manual:
        out["labels"][:N_SAX] = fitted(_planes(manual["sa"].astype(np.uint8), slices, frames), 0, labels=True)
        out["labelled"][:N_SAX] = np.isin(frames, drawn["sa"])[None]
        out["carried"][:N_SAX, list(SAX_CLASSES)] = True
    for i, view in enumerate(LAX_VIEWS, start=N_SAX):
        if view not in manual:
            continue
        lab = fitted(_planes(manual[view].astype(np.uint8), [0], frames), 0, labels=True)[0]
        out["labels"][i] = np.where(np.isin(lab, lax_classes[view]), lab, 0)  # a `full` view's LV/RV: not LAX classes
        out["labelled"][i] = np.isin(frames, drawn[view])
        out["carried"][i, [0, *lax_classes[view]]] = True
    if "seg_sa" in files:
        seg, _, _ = load_nifti(files["seg_sa"], subject)
        out["directseg"] = fitted(_planes(seg.astype(np.uint8), slices, frames), 0, labels=True)
    return out


def allowed_classes() -> np.ndarray:
    """(9, 6) bool: the classes each plane can hold (SAX: LVC, LVM, RVC; LAX: LA, RA)."""
    allowed = np.zeros((len(PLANES), N_CLASSES), bool)
    allowed[:N_SAX, list(SAX_CLASSES)] = True
    allowed[N_SAX:, list(LAX_CLASSES)] = True
    return allowed
