"""File-level DeepRecon motion adaptation (paper Sect. 2.3, Eq. 3; Fig. 4).

Both subjects' sampled cine frames are inverted in one batched call, the target's motion
is transferred onto the source's first frame in W+, and G + the latent Seg turn the
adapted codes into an image and label cine. The LV cavity curves compare like with like:
source and target are Seg(G(w)) of their own inversions, as the adapted one is.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cinerecon.io.files import write_json, write_tsv
from cinerecon.io.nifti import InputError, frame_interval, load_nifti, save_nifti
from cinerecon.latent.deeprecon import InversionSettings, generate, invert_slices
from cinerecon.latent.motion import adapt_motion, lv_volume_curve
from cinerecon.models.data import frames_to_slices, normalise_intensity, slices_to_frames
from cinerecon.models.train_seg import predict_slices
from cinerecon.phenotypes import ejection_fraction
from cinerecon.plots.motion import motion_adaptation_figure

log = logging.getLogger(__name__)
OUTPUTS = ("image", "labels", "curves", "record", "figure")


def _load_cine(subject: str, path, crop: int | None = None):
    """A normalised SAX cine; `crop`: the in-plane size it must have (that of the other cine)."""
    image, affine, header = load_nifti(path, subject)
    if image.ndim != 4 or image.shape[3] < 1:
        raise InputError(subject, path, f"need a 4D SAX cine (X, Y, Z, T), got shape {image.shape}")
    if image.shape[0] != image.shape[1] or (crop is not None and image.shape[:2] != (crop, crop)):
        raise InputError(subject, path, f"in-plane size {image.shape[:2]}: motion adaptation needs square crops "
                                        f"of one size (crop.sax_size)")
    try:
        normalised = normalise_intensity(image)
    except ValueError as exc:
        raise InputError(subject, path, str(exc)) from exc
    return normalised, affine, header


def _manual_curve(subject: str, path, affine, frames) -> np.ndarray:
    """Manual LVC volumes at the sampled frames; NaN where a frame has no annotation (UK Biobank: all but ED/ES)."""
    labels, _, _ = load_nifti(path, subject)
    if labels.ndim != 4 or labels.shape[3] <= max(frames):
        raise InputError(subject, path, f"labels of shape {labels.shape} do not cover frames up to {max(frames)}")
    sel = labels[..., frames]
    curve = lv_volume_curve(sel, affine)
    return np.where(sel.reshape(-1, len(frames)).any(axis=0), curve, np.nan)


def _ef(curve: np.ndarray) -> dict:
    """ED = first sampled frame (frame 0), ES = smallest sampled volume."""
    edv = float(curve[0])
    esv = float(np.nanmin(curve)) if np.isfinite(curve).any() else math.nan
    values = {"edv_ml": edv, "esv_ml": esv, "ef_percent": ejection_fraction(edv, esv)}
    return {k: None if math.isnan(v) else v for k, v in values.items()}  # JSON has no NaN


def adapt_subject_motion(source: str, target: str, image_paths: dict, G, E, perceptual, seg_model,
                         settings: InversionSettings, outputs: dict, label_paths: dict | None = None,
                         frame_stride: int = 5, strength=1.0, device="cpu") -> dict:
    """Transfer the target's cine motion onto the source's first frame; write `outputs`
    {"image", "labels" (NIfTI cines, source's affine, T = sampled frames), "curves" (TSV),
    "record" (JSON), "figure" (PNG)}. Returns the record.

    image_paths / label_paths: {subject: aligned SAX (label) cine}; labels are optional and
    only add the manual curves for reference. Frames: every `frame_stride`-th frame of the
    target; the source is sampled at the same fractions of its cycle.
    """
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
    started = time.perf_counter()
    label_paths = label_paths or {}
    src_image, src_affine, _ = _load_cine(source, image_paths[source])
    crop = src_image.shape[0]
    tgt_image, tgt_affine, tgt_header = _load_cine(target, image_paths[target], crop)
    n_src, n_tgt = src_image.shape[3], tgt_image.shape[3]
    frames = list(range(0, n_tgt, frame_stride))
    fractions = [f / n_tgt for f in frames]
    # The motion (and so the adapted cine's timing) is the target's; the source curve is
    # read at the same points of its own cycle, should its frame count differ.
    src_frames = [min(round(x * n_src), n_src - 1) for x in fractions]
    z_src, z_tgt = src_image.shape[2], tgt_image.shape[2]

    # One inversion call for both subjects: the slices share batches (cinerecon.latent.deeprecon).
    slices = np.concatenate([frames_to_slices(src_image, src_frames), frames_to_slices(tgt_image, frames)])[:, None]
    spacing = np.linalg.norm(src_affine[:3, :2], axis=0)
    history: list = []
    codes = invert_slices(slices, G, E, perceptual, spacing, settings, device, history)
    steps = max(codes)
    w = codes[steps]
    w_src = w[: len(frames) * z_src].reshape(len(frames), z_src, *w.shape[1:])
    w_tgt = w[len(frames) * z_src:].reshape(len(frames), z_tgt, *w.shape[1:])
    adapted = adapt_motion(torch.from_numpy(w_src[0]), torch.from_numpy(w_tgt), strength).numpy()
    inverted = time.perf_counter()

    # One generate + Seg pass over source, target and adapted codes.
    images = generate(G, np.concatenate([w_src.reshape(-1, *w.shape[1:]), w_tgt.reshape(-1, *w.shape[1:]),
                                         adapted.reshape(-1, *w.shape[1:])]), device=device, crop=crop)
    labels = predict_slices(seg_model, images, device=device)
    cut = np.cumsum([len(frames) * z_src, len(frames) * z_tgt])
    parts = {name: (images[a:b, 0], labels[a:b], z) for name, a, b, z in
             (("source", 0, cut[0], z_src), ("target", cut[0], cut[1], z_tgt), ("adapted", cut[1], None, z_src))}
    cine = {name: (slices_to_frames(img, z), slices_to_frames(lab, z)) for name, (img, lab, z) in parts.items()}
    generated = time.perf_counter()

    curves = pd.DataFrame({"frame": frames, "source_frame": src_frames, "time_fraction": fractions,
                           "source_ml": lv_volume_curve(cine["source"][1], src_affine),
                           "target_ml": lv_volume_curve(cine["target"][1], tgt_affine),
                           "adapted_ml": lv_volume_curve(cine["adapted"][1], src_affine)})
    if source in label_paths:
        curves["source_manual_ml"] = _manual_curve(source, label_paths[source], src_affine, src_frames)
    if target in label_paths:
        curves["target_manual_ml"] = _manual_curve(target, label_paths[target], tgt_affine, frames)
    strength_out = np.asarray(strength, dtype=float).tolist()
    record = {"source": source, "target": target, "frames": frames, "source_frames": src_frames,
              "frame_stride": frame_stride, "strength": strength_out, "inversion_steps": int(steps),
              "n_slices": {"source": z_src, "target": z_tgt},
              "ef": {c[:-3]: _ef(curves[c].to_numpy()) for c in curves if c.endswith("_ml")},
              "final_loss": history[-1]["loss"] if history else None}
    # timings go to the log, not the record: the same inputs give the same bytes
    log.info("%s -> %s: inverted in %.1f s, generated and segmented in %.1f s", source, target,
             inverted - started, generated - inverted)

    interval = frame_interval(tgt_header)
    written = []
    try:  # every file is atomic; on a failure part-way the ones already written go too
        for key, data, dtype in (("image", cine["adapted"][0], np.float32), ("labels", cine["adapted"][1], np.uint8)):
            save_nifti(outputs[key], data, src_affine, None if interval is None else interval * frame_stride, dtype)
            written.append(outputs[key])
        write_tsv(outputs["curves"], curves)
        written.append(outputs["curves"])
        mid = z_src // 2
        motion_adaptation_figure(curves, cine["adapted"][0][:, :, mid], cine["adapted"][1][:, :, mid],
                                 outputs["figure"], title=f"{target} motion on {source} (mid slice {mid})")
        written.append(outputs["figure"])
        write_json(outputs["record"], record)
    except BaseException:
        for path in written:
            Path(path).unlink(missing_ok=True)
        raise
    log.info("%s -> %s: %d frames, EF source %s / target %s / adapted %s", target, source, len(frames),
             *(record["ef"][c]["ef_percent"] for c in ("source", "target", "adapted")))
    return record
