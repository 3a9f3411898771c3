"""File-level Gemini-GAN and V-AMA steps: train from the aligned stacks and the 3D truth,
reconstruct a subject on its high-resolution grid, and score methods against the truth.

`subjects` arguments map an ID to its files: {"sa": aligned SAX cine, "truth": the 3D truth
(Layout.highres_truth), "phenotypes": truth phenotypes.json (its ES frame), "labels": the
label cine that gives the landmarks (manual or predicted)}.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from cinerecon.baselines import reconstruct_labels
from cinerecon.baselines.grid import pad_slices
from cinerecon.io.files import write_history, write_json
from cinerecon.io.nifti import InputError, load_nifti, nifti_geometry, save_nifti
from cinerecon.io.subject import label_ed_es
from cinerecon.labels import LVC, LVM, RVC
from cinerecon.metrics.image import psnr, ssim
from cinerecon.metrics.overlap import dice
from cinerecon.models.checkpoints import load_model, save_weights
from cinerecon.models.gemini_gan import GeminiConfig, GeminiGenerator
from cinerecon.models.resume import TrainingJob
from cinerecon.models.unet import pad_to_multiple
from cinerecon.models.vama import Vama, VamaConfig
from cinerecon.superres.data import (
    PHASES,
    Stack,
    fit_slices,
    load_stack,
    network_input,
    sample_on_grid,
    truth_frames,
    truth_on_grid,
)
from cinerecon.superres.landmarks import LandmarkError, align_stack, kabsch, rigid_matrix, six_landmarks
from cinerecon.superres.train import stack_tensors, train_gemini, train_vama

log = logging.getLogger(__name__)
GEMINI_FORMAT, VAMA_FORMAT = "cinerecon.gemini-gan/1", "cinerecon.vama/1"
# The networks' classes -> pipeline label values
CLASS_VALUES = np.array([0, LVC, LVM, RVC], np.uint8)
STRUCTURES = {"LVC": LVC, "LVM": LVM, "RVC": RVC}
TASK_OF_METHOD = {"gemini_gan": "joint", "unet_seg": "seg", "unet_image": "image"}
DATA_RANGE = 2.0  # images in [-1, 1]


def z_factor_of(affine: np.ndarray, slice_mm: float) -> int:
    return max(1, int(round(float(np.linalg.norm(affine[:3, 2])) / slice_mm)))


def gemini_config(settings: dict, method: str, z_factor: int) -> GeminiConfig:
    preset = getattr(GeminiConfig, settings["preset"])
    return preset(**{**settings.get("model", {}), "in_slices": settings["in_slices"], "z_factor": z_factor,
                     "xy_factor": settings["xy_factor"], "task": TASK_OF_METHOD[method]})


def paired_stack(subject: str, files: dict, settings: dict) -> tuple[Stack, dict]:
    """The stack at the truth's frames and the truth on its grid."""
    frames = truth_frames(subject, files["phenotypes"])
    sa_affine = nifti_geometry(files["sa"], subject)[1]  # the header: the cine is read once, below
    stack = load_stack(subject, files["sa"], frames, settings["xy_factor"], z_factor_of(sa_affine, settings["slice_mm"]))
    return stack, truth_on_grid(stack, files["truth"])


def training_items(stack: Stack, truth: dict, config: GeminiConfig) -> list[dict]:
    """One example per phase, padded in-plane to the network's multiple (padding unscored)."""
    items = []
    for phase in PHASES:
        image, labels, mask = (fit_slices(a, config.out_slices, fill) for a, fill in zip(truth[phase], (-1.0, 0, False)))
        x = torch.from_numpy(network_input(stack.images[phase], config.in_slices, stack.subject))
        x, (rows, cols) = pad_to_multiple(x[None], config.multiple)
        f = config.xy_factor
        full = tuple(n * f for n in x.shape[-2:])
        place = (slice(None), slice(rows.start * f, rows.stop * f), slice(cols.start * f, cols.stop * f))
        padded = {"image": np.full((config.out_slices,) + full, -1.0, np.float32),
                  "labels": np.zeros((config.out_slices,) + full, np.uint8),
                  "mask": np.zeros((config.out_slices,) + full, bool)}
        for k, v in zip(("image", "labels", "mask"), (image, labels, mask)):
            padded[k][place] = v
        items.append({"x": x[0].numpy(), **padded})
    return items


def train_gemini_files(subjects: dict, settings: dict, method: str, outputs: dict, device,
                       job: TrainingJob | None = None) -> list[dict]:
    """Train Gemini-GAN (method gemini_gan) or an ablation (unet_seg, unet_image) on every
    subject's ED and ES pairs; write the history, then the model."""
    if not subjects:
        raise ValueError("Gemini-GAN: no training subjects with 3D truth")
    job = job or TrainingJob.transient(outputs["model"])
    log.info("training subjects (%d): %s", len(subjects), " ".join(subjects))
    items, k = [], None
    for s, files in subjects.items():
        try:
            stack, truth = paired_stack(s, files, settings)
            k_s = z_factor_of(stack.affine, settings["slice_mm"])
            if k is not None and k_s != k:
                raise InputError(s, files["sa"], f"its slice spacing gives {k_s} thin slices per spacing, the "
                                 f"other training subjects' {k}")
            mine = training_items(stack, truth, gemini_config(settings, method, k_s))
        except InputError as exc:  # one bad subject does not stop the training
            log.warning("left out of training: %s", exc)
            continue
        k, items = k_s, items + mine
    if not items:
        raise ValueError("Gemini-GAN: every training subject was left out (see the warnings above)")
    config = gemini_config(settings, method, k)
    shapes = {it["x"].shape for it in items}
    if len(shapes) > 1:
        raise ValueError(f"Gemini-GAN: the aligned crops differ in size {sorted(shapes)}; crop.sax_size fixes one")
    log.info("%s (%s, %s) on %d stacks of %d subjects: %d -> %d slices, x%d in-plane", method, settings["preset"],
             config.task, len(items), len(subjects), config.in_slices, config.out_slices, config.xy_factor)
    G, history = train_gemini(stack_tensors(items), config, settings["steps"], settings["batch_size"], settings["lr"],
                              settings["weight_decay"], settings.get("crop"), settings["seed"], device, job.state,
                              job.deterministic)
    return _save_trained(G, config, GEMINI_FORMAT, history, outputs, job)


def _save_trained(model, config, fmt: str, history: list[dict], outputs: dict, job: TrainingJob) -> list[dict]:
    """The history, then the model last (a failure never leaves a model behind), then the
    job's side state cleared."""
    write_history(outputs["history"], history)
    save_weights(model, config.to_dict(), fmt, outputs["model"])
    job.finish()
    return history


def load_gemini(path, device="cpu") -> GeminiGenerator:
    return load_model(path, GEMINI_FORMAT, "Gemini-GAN", lambda c: GeminiGenerator(GeminiConfig.from_dict(c)), device)


@torch.no_grad()
def predict(G: GeminiGenerator, stack: Stack, images: dict | None = None) -> dict:
    """{phase: (image (X', Y', Z') or None, labels (X', Y', Z') or None)} on the stack's grid;
    `images` replaces the stack's own (V-AMA's adapted slices)."""
    c = G.config
    device = next(G.parameters()).device
    if (stack.z_factor, stack.xy_factor) != (c.z_factor, c.xy_factor):
        raise InputError(stack.subject, "aligned SAX stack", f"its grid refines the stack by (z {stack.z_factor}, "
                         f"xy {stack.xy_factor}), the model by (z {c.z_factor}, xy {c.xy_factor}): another slice "
                         "spacing than the training subjects'")
    n_fine = stack.hr_shape[2]
    if n_fine > c.out_slices:
        raise InputError(stack.subject, "aligned SAX stack", f"{stack.n_slices} slices, the model takes at most "
                         f"{c.in_slices} (gemini_gan.in_slices)")
    out = {}
    for phase, lr in (images or stack.images).items():
        x = torch.from_numpy(network_input(lr, c.in_slices, stack.subject))[None]
        x, (rows, cols) = pad_to_multiple(x, c.multiple)
        image, logits = G(x.to(device))
        f = c.xy_factor
        crop = (slice(rows.start * f, rows.stop * f), slice(cols.start * f, cols.stop * f))
        img = None if image is None else np.moveaxis(image[0, :n_fine, crop[0], crop[1]].clamp(-1, 1).cpu().numpy(), 0, -1)
        lab = None if logits is None else \
            np.moveaxis(CLASS_VALUES[logits[0, :, :n_fine, crop[0], crop[1]].argmax(0).cpu().numpy()], 0, -1)
        out[phase] = (img, lab)
    return out


def write_prediction(stack: Stack, prediction: dict, outputs: dict, record_path, method: str) -> dict:
    """Label (uint8) and image (float32, [-1, 1]) volumes on the high-resolution grid, and a record."""
    for phase, (image, labels) in prediction.items():
        save_nifti(outputs[phase], labels, stack.hr_affine, dtype=np.uint8)
        save_nifti(outputs[f"image_{phase}"], image, stack.hr_affine, dtype=np.float32)
    record = {"subject": stack.subject, "method": method, "frames": stack.frames, "n_slices": stack.n_slices,
              "n_frames": stack.n_frames, "k": stack.z_factor, "pad_slices": pad_slices(stack.z_factor),
              "xy_factor": stack.xy_factor, "hr_shape": list(stack.hr_shape), "window": list(stack.window)}
    write_json(record_path, record)
    return record


# ---- scoring against the 3D truth (the paper's Tables 2 and 3) ----------------------------
def score(subject: str, method: str, phase: str, image, labels, truth: tuple) -> list[dict]:
    """Dice per structure and PSNR/SSIM over the truth's field of view, as long rows; a
    method without images (or labels) gives no such rows. Volumes (Z', X', Y')."""
    t_image, t_labels, mask = truth
    if not mask.any():
        raise InputError(subject, "3D truth", "its field of view misses the high-resolution grid")
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(mask))  # the mask is a box
    rows = []
    if labels is not None:
        for name, value in STRUCTURES.items():
            rows.append({"metric": f"dice_{name}", "value": dice(labels[box] == value, t_labels[box] == value)})
    if image is not None:
        pred, ref = np.moveaxis(image[box], 0, -1), np.moveaxis(t_image[box], 0, -1)
        rows += [{"metric": "psnr", "value": psnr(pred, ref, DATA_RANGE)},
                 {"metric": "ssim", "value": ssim(pred, ref, DATA_RANGE)}]
    return [{"subject": subject, "method": method, "phase": phase, **r} for r in rows]


def interpolation_rows(subject: str, stack: Stack, truth: dict, seg_path) -> pd.DataFrame:
    """The nn and linear rows: the stack interpolated onto the grid (image) and the network's
    SAX segmentation reconstructed by the nn / linear baselines (labels)."""
    seg, seg_affine, _ = load_nifti(seg_path, subject)
    rows = []
    for phase, t in stack.frames.items():
        labels_lr = seg[..., t]
        if not (labels_lr == LVC).any():
            raise InputError(subject, seg_path, f"no LV blood pool in frame {t} ({phase}) of the segmentation")
        image_lr = np.moveaxis(stack.images[phase], 0, -1)
        for method, order in (("nn", 0), ("linear", 1)):
            image = sample_on_grid(image_lr, stack.affine, stack.hr_affine, stack.hr_shape, order, mode="nearest")
            fine, fine_affine = reconstruct_labels(labels_lr, seg_affine, stack.z_factor, method)
            labels = sample_on_grid(fine, fine_affine, stack.hr_affine, stack.hr_shape, 0,
                                    mode="nearest").round().astype(np.uint8)
            rows += score(subject, method, phase, np.moveaxis(image, -1, 0), np.moveaxis(labels, -1, 0), truth[phase])
    return pd.DataFrame(rows)


def network_rows(subject: str, method: str, prediction: dict, truth: dict) -> pd.DataFrame:
    return pd.DataFrame([r for phase, (image, labels) in prediction.items()
                         for r in score(subject, method, phase,
                                        None if image is None else np.moveaxis(image, -1, 0),
                                        None if labels is None else np.moveaxis(labels, -1, 0), truth[phase])])


# ---- V-AMA -------------------------------------------------------------------------------
def landmark_stack(subject: str, path, labels: np.ndarray, affine: np.ndarray, frames: dict) -> dict:
    """{phase: six landmarks} from the subject's label cine (manual, else predicted) at `path`."""
    try:
        return {p: six_landmarks(labels[..., t], affine) for p, t in frames.items()}
    except LandmarkError as exc:
        raise InputError(subject, path, str(exc)) from None


def vama_slices(targets: dict, sources: dict, settings: dict) -> dict:
    """Target slices, and each source stack rigidly aligned (Kabsch on six landmarks) onto a
    target stack, paired in turn: {"target", "source", "context"} (N, 1, H, W) tensors. A
    subject whose landmarks cannot be found is left out with a warning."""
    def stacks(group):
        out = {}
        for s, files in group.items():
            try:
                labels, affine, _ = load_nifti(files["labels"], s)
                frames = label_ed_es(s, files["labels"], labels, affine)  # no truth is read
                stack = load_stack(s, files["sa"], frames, 1, 1)
            except InputError as exc:
                log.warning("V-AMA leaves %s out: %s", s, exc)
                continue
            try:
                marks = landmark_stack(s, files["labels"], labels, affine, frames)
            except InputError as exc:  # e.g. a segmentation the domain shift has broken
                log.warning("V-AMA aligns %s by its crop's centre instead of landmarks: %s", s, exc)
                marks = None
            out[s] = (stack, marks)
        return out

    tgt, src = stacks(targets), stacks(sources)
    log.info("target subjects (%d): %s; source subjects (%d): %s", len(tgt), " ".join(tgt), len(src), " ".join(src))
    if not tgt or not src:
        raise ValueError(f"V-AMA needs target and source stacks with landmarks: {len(tgt)} target, {len(src)} source")
    target_slices = [im for stack, _ in tgt.values() for p in PHASES for im in stack.images[p]]
    source_slices, context_slices = [], []
    order = list(tgt.values())
    for i, (stack, marks) in enumerate(src.values()):
        for j, phase in enumerate(PHASES):
            fixed, fixed_marks = order[(2 * i + j) % len(order)]
            transform = rigid_matrix(*kabsch(marks[phase], fixed_marks[phase])) \
                if marks is not None and fixed_marks is not None else centre_alignment(stack, fixed)
            moved = align_stack(np.moveaxis(stack.images[phase], 0, -1), stack.affine, transform, fixed.affine,
                                fixed.images[phase].shape[1:] + (fixed.n_slices,))
            source_slices += list(np.moveaxis(moved, -1, 0))
            context_slices += list(fixed.images[phase])
    as_tensor = lambda slices: torch.from_numpy(np.stack(slices)[:, None].astype(np.float32))  # noqa: E731
    return {"target": as_tensor(target_slices), "source": as_tensor(source_slices),
            "context": as_tensor(context_slices)}


def centre_alignment(moving: Stack, fixed: Stack) -> np.ndarray:
    """The rigid map that puts the moving stack's centre on the fixed one's, axes on axes
    (the crops are heart-centred): V-AMA's fallback where landmarks cannot be found."""
    def centre_and_axes(stack):
        shape = np.array(stack.images[PHASES[0]].shape[1:] + (stack.n_slices,), float)
        centre = stack.affine[:3, :3] @ ((shape - 1) / 2) + stack.affine[:3, 3]
        return centre, stack.affine[:3, :3] / np.linalg.norm(stack.affine[:3, :3], axis=0)

    c_m, u_m = centre_and_axes(moving)
    c_f, u_f = centre_and_axes(fixed)
    rotation = u_f @ u_m.T
    return rigid_matrix(rotation, c_f - rotation @ c_m)


def train_vama_files(targets: dict, sources: dict, settings: dict, outputs: dict, device,
                     job: TrainingJob | None = None) -> list[dict]:
    job = job or TrainingJob.transient(outputs["model"])
    data = vama_slices(targets, sources, settings)
    config = getattr(VamaConfig, settings["preset"])(**settings.get("model", {}))
    data = {k: pad_to_multiple(v, config.multiple)[0] for k, v in data.items()}
    log.info("V-AMA (%s) on %d target and %d aligned source slices", settings["preset"], len(data["target"]),
             len(data["source"]))
    model, history = train_vama(data["target"], data["source"], data["context"], config,
                                (settings["target_steps"], settings["source_steps"]), settings["batch_size"],
                                settings["lr"], settings["beta1"], settings["seed"], device, job.state,
                                job.deterministic)
    return _save_trained(model, config, VAMA_FORMAT, history, outputs, job)


def load_vama(path, device="cpu") -> Vama:
    return load_model(path, VAMA_FORMAT, "V-AMA", lambda c: Vama(VamaConfig.from_dict(c)), device)


@torch.no_grad()
def adapt_images(vama: Vama, stack: Stack) -> dict:
    """{phase: (Z, X, Y)} the stack's slices mapped to the target domain's look."""
    device = next(vama.parameters()).device
    out = {}
    for phase, images in stack.images.items():
        x, (rows, cols) = pad_to_multiple(torch.from_numpy(images)[:, None], vama.config.multiple)
        out[phase] = vama.adapt(x.to(device))[:, 0, rows, cols].cpu().numpy()
    return out
