"""File-level DMCVR / DiffAE steps (He et al., MICCAI 2023): train the diffusion autoencoder,
encode the ED/ES slices of many subjects at once (z_sem, z_mor, x_T by DDIM inversion),
interpolate between adjacent slices (lerp z_sem and z_mor, slerp x_T), decode, segment with
the segmentation network trained on real images, and write the volumes.

`dmcvr` is conditioned on z_mor, the frozen SAX U-Net's bottleneck; `diffae` is the same
model without that path (the paper's ablation). The model lives in cinerecon.models.diffusion.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import pandas as pd
import torch

from cinerecon.baselines.grid import fine_affine, pad_slices, z_upsampling_factor
from cinerecon.io.files import atomic_path, write_history, write_json
from cinerecon.io.nifti import nifti_geometry, save_nifti
from cinerecon.latent.interpolate import fine_latents, lerp, slerp
from cinerecon.latent.pretraining import cine_store
from cinerecon.metrics.heldout import heldout_rows, neighbour_midpoints
from cinerecon.models.diffusion import DiffAE, DiffusionConfig, morphology_latent, save_diffae, train_diffae
from cinerecon.models.model_grid import ModelGrid, round_up
from cinerecon.models.resume import TrainingJob
from cinerecon.models.train_seg import predict_slices

log = logging.getLogger(__name__)
PHASES = ("ED", "ES")
DIFFUSION_METHODS = ("dmcvr", "diffae")
# How each code is interpolated between slices (the paper's eq. 5): x_T is Gaussian noise,
# whose typical set is a sphere, so it is slerped; the semantic codes are lerped.
COMBINE = {"z_sem": lerp, "z_mor": lerp, "x_T": slerp}


def morphology_shape(seg_model, image_size: int) -> tuple[int, int]:
    """(channels, downsampling factor) of the segmentation network's bottleneck, z_mor, for
    slices of `image_size` (padded to the network's multiple, as morphology_latent does)."""
    device = next(seg_model.parameters()).device
    z = morphology_latent(seg_model, torch.zeros(1, 1, image_size, image_size, device=device))
    seen = round_up(image_size, getattr(getattr(seg_model, "config", None), "multiple", 1))
    return int(z.shape[1]), max(1, seen // int(z.shape[-1]))


def model_size(settings: dict, crop_size: int) -> int:
    """The denoiser's image size: `dmcvr.model.image_size` if set; otherwise the paper preset's
    published 256 px, and for the tiny preset the crop size rounded up to its multiple."""
    overrides = {k: v for k, v in settings.get("model", {}).items() if k != "image_size"}
    preset = getattr(DiffusionConfig, settings["preset"])(**overrides)
    size = settings.get("model", {}).get("image_size")
    if size is None:
        size = preset.image_size if settings["preset"] == "paper" else round_up(crop_size, preset.multiple)
    if size % preset.multiple:
        raise ValueError(f"dmcvr.model.image_size {size} is not a multiple of the denoiser's {preset.multiple}")
    return int(size)


def diffusion_config(settings: dict, crop_size: int, seg_model=None) -> DiffusionConfig:
    """The preset (tiny | paper) with settings["model"] overrides at :func:`model_size`; z_mor
    sized from the segmentation network, which sees each slice at the crop's pixel scale, or
    none (DiffAE) without one."""
    overrides = {k: v for k, v in settings.get("model", {}).items() if k != "image_size"}
    preset = getattr(DiffusionConfig, settings["preset"])
    image_size = model_size(settings, crop_size)
    overrides["image_size"] = image_size
    grid = ModelGrid(crop_size, image_size, preset(**overrides).multiple)
    if seg_model is None:
        overrides["mor_channels"] = 0
    else:
        seg_size = crop_size if grid.resampled else image_size
        channels, factor = morphology_shape(seg_model, seg_size)
        bottleneck = max(1, seg_size // factor)
        overrides["mor_channels"] = channels
        # relative to the denoiser's grid, as a power of 2 (z_mor is resized to the level it joins)
        overrides["mor_downsample"] = 2 ** max(0, int(math.floor(math.log2(max(1, image_size // bottleneck)))))
        overrides["seg_input_size"] = crop_size if grid.resampled else 0
    return preset(**overrides)


def train_diffusion_files(image_paths: dict, settings: dict, outputs: dict, device: str,
                          seg_model=None, job: TrainingJob | None = None) -> list[dict]:
    """Train DMCVR (with seg_model: z_mor from its bottleneck) or DiffAE (without) on every
    `frame_stride`-th frame of the pre-training subjects' cines ({subject: SAX cine}),
    streamed from an on-disk store; the run is saved and resumed through `job`. Writes the
    history and a reconstruction figure, then the model last."""
    if not image_paths:
        raise ValueError("no pre-training subjects")
    job = job or TrainingJob.transient(outputs["model"])
    first = next(iter(image_paths))
    shape, _ = nifti_geometry(image_paths[first], first)
    if shape[0] != shape[1]:
        raise ValueError(f"DMCVR needs square SAX crops (crop.sax_size), got {shape[0]}x{shape[1]}")
    config = diffusion_config(settings, shape[0], seg_model)
    grid = ModelGrid(shape[0], config.image_size, config.multiple)
    # the crops are stored (a quarter of 256 px slices' bytes for 128 px crops) and each batch
    # goes onto the model's grid on the device; z_mor comes from the crops themselves
    images = cine_store(job, image_paths, settings["frame_stride"])
    log.info("%s %s at %d px (%s from %d px crops) on %d slices of %d subjects",
             "DMCVR" if seg_model is not None else "DiffAE", settings["preset"], images.shape[-1],
             "resampled" if grid.resampled else "padded", shape[0], len(images), len(image_paths))
    model, history = train_diffae(images, config, steps=settings["steps"], batch_size=settings["batch_size"],
                                  lr=settings["lr"], seed=settings["seed"], device=device, log=log,
                                  seg_model=seg_model, state=job.state, workers=job.workers,
                                  precision=settings.get("precision", "fp32"), deterministic=job.deterministic,
                                  to_model=grid.to_model)
    write_history(outputs["history"], history)
    reals = images[:: max(1, len(images) // 6)][:6].astype(np.float32)
    _reconstruction_grid(model, reals, settings, outputs["samples"], device)
    save_diffae(model, outputs["model"])  # last: a failing figure never leaves a model behind
    job.finish()
    return history


# DDIM steps of the training's round-trip figure: fixed, so that the training job does not
# depend on the inference setting dmcvr.ddim_steps (changing it must not retrain the model)
ROUND_TRIP_DDIM_STEPS = 10


def _reconstruction_grid(model: DiffAE, reals: np.ndarray, settings: dict, path, device) -> None:
    """Input slices (top) and their DDIM encode-decode round trip (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    codes = encode_slices(model, reals, ROUND_TRIP_DDIM_STEPS, len(reals), device)
    fakes = decode_codes(model, codes, ROUND_TRIP_DDIM_STEPS, len(reals), device)
    fig, axes = plt.subplots(2, len(reals), figsize=(1.6 * len(reals), 3.4), squeeze=False)
    for row, batch in enumerate((reals, fakes)):
        for ax, img in zip(axes[row], batch):
            ax.imshow(img[0].T, cmap="gray", vmin=-1, vmax=1, origin="lower")
            ax.axis("off")
    fig.suptitle(f"input (top) and DDIM round trip, {ROUND_TRIP_DDIM_STEPS} steps (bottom)")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


# ---- codes: encode, interpolate, decode -----------------------------------------------
def encode_slices(model: DiffAE, images: np.ndarray, steps: int, batch_size: int, device,
                  refine: int = 0, clip: bool = True) -> dict:
    """{z_sem, z_mor (DMCVR only), x_T} tensors (on the CPU) of slices (N, 1, H, W) in [-1, 1];
    ``clip`` pred_x0 at every DDIM step (:func:`cinerecon.models.diffusion.ddim_step`)."""
    x = ModelGrid.of(model, images.shape[-1]).to_model(images)
    model.to(device)
    if model.seg_model is not None:
        model.seg_model.to(device)
    # z_mor from the crops as they are: the segmentation network was trained on them
    z_sem, z_mor, x_T = model.encode(x.to(device), steps=steps, batch_size=batch_size, refine=refine,
                                     seg_x=torch.as_tensor(np.asarray(images, dtype=np.float32)), clip=clip)
    codes = {"z_sem": z_sem.cpu(), "x_T": x_T.cpu(), "crop": images.shape[-2:]}
    if z_mor is not None:
        codes["z_mor"] = z_mor.cpu()
    return codes


def decode_codes(model: DiffAE, codes: dict, steps: int, batch_size: int, device, clip: bool = True) -> np.ndarray:
    """Slices (N, 1, H, W) in [-1, 1] from codes (cropped back to the input size).

    DDIM decoding is deterministic, so equal codes are decoded once: the fine grid's end
    slabs repeat the end slices' codes (k // 2 copies at each end, a tenth of a UK Biobank
    subject's fine slices at 1 mm), and every copy costs `steps` denoiser calls."""
    first, inverse = unique_codes(codes)
    codes = select(codes, torch.as_tensor(first))
    z_mor = codes.get("z_mor")
    x0 = model.to(device).decode(codes["x_T"].to(device), codes["z_sem"].to(device),
                                 None if z_mor is None else z_mor.to(device), steps=steps, batch_size=batch_size,
                                 clip=clip)
    return ModelGrid.of(model, int(codes["crop"][-1])).to_crop(x0).clamp(-1, 1).cpu().numpy()[inverse]


def unique_codes(codes: dict) -> tuple[np.ndarray, np.ndarray]:
    """(index of each distinct slice code, in order of first appearance; for every slice, the
    position of its code in that list): codes[first][inverse] == codes."""
    rows = np.concatenate([codes[n].reshape(len(codes[n]), -1).cpu().numpy() for n in _names(codes)], axis=1)
    _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)  # np.unique sorts by value: keep the slices' own order
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[inverse.reshape(-1)]


def _names(codes: dict) -> list[str]:
    return [name for name in COMBINE if name in codes]


def select(codes: dict, index) -> dict:
    """The codes of some slices (index: slice or integer array)."""
    return {**{n: codes[n][index] for n in _names(codes)}, "crop": codes["crop"]}


def concatenate(parts: list[dict]) -> dict:
    return {**{n: torch.cat([p[n] for p in parts]) for n in _names(parts[0])}, "crop": parts[0]["crop"]}


def fine_codes(codes: dict, k: int) -> dict:
    """Codes of one stack (Z slices) -> codes of the shared fine grid (cinerecon.baselines.grid)."""
    return {**{n: fine_latents(codes[n], k, COMBINE[n]) for n in _names(codes)}, "crop": codes["crop"]}


def heldout_codes(codes: dict) -> dict:
    """Codes half way between slices j-1 and j+1 for every interior slice j (held-out evaluation)."""
    return {**{n: neighbour_midpoints(codes[n], COMBINE[n]) for n in _names(codes)}, "crop": codes["crop"]}


def save_codes(path, codes: dict, frames, n_slices: int) -> None:
    """Frame-major codes (F*Z, ...) -> arrays (F, Z, ...) with the frame indices, atomically."""
    arrays = {n: codes[n].numpy().reshape(len(frames), n_slices, *codes[n].shape[1:]) for n in _names(codes)}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays, frames=np.asarray(frames), phases=np.asarray(PHASES))


def load_codes(path) -> dict:
    with np.load(path) as z:
        return {**{n: torch.from_numpy(z[n]) for n in COMBINE if n in z.files},
                "frames": [int(f) for f in z["frames"]]}


# ---- a shard of subjects: everything decoded in shared batches -------------------------
class DiffusionShard:
    """Encode, interpolate, decode and segment the ED/ES stacks of many subjects together.

    subjects: {id: deeprecon_files.subject_slices(...)} (images (F*Z, 1, X, Y) frame-major,
    frames, n_slices, affine). Work is done in passes of ``settings["subjects_per_pass"]``
    subjects (all their slices in shared batches of ``inference_batch_size``), when a
    subject's results are first asked for; a subject's volumes are dropped once written,
    so host memory stays bounded however large the shard.
    """

    def __init__(self, subjects: dict, model: DiffAE, seg_model, settings: dict, target_spacing_mm: float,
                 device, heldout_subjects=None):
        self.subjects, self.model, self.seg_model, self.device = subjects, model, seg_model, device
        # held-out slices are decoded only for these (evaluated, labelled) subjects; None: all
        self.heldout_subjects = set(subjects if heldout_subjects is None else heldout_subjects)
        self.settings, self.target_spacing_mm = settings, target_spacing_mm
        self.order = list(subjects)
        self.codes, self.results, self.k, self.passes, self.pass_of, self.failed = {}, {}, {}, [], {}, {}

    def result(self, subject: str, phase: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(images (N, X, Y) in [-1, 1], labels (N, X, Y) uint8) of a subject's fine-grid
        `volume` or its `heldout` slices at `phase`."""
        if subject in self.failed:
            raise self.failed[subject]
        if subject not in self.results:
            self._run_pass(subject)
        return self.results[subject][phase, kind]

    def _run_pass(self, subject: str) -> None:
        # Passes are fixed groups of consecutive subjects, whichever of them are asked for,
        # so that a resumed job decodes in the same batches (and bytes) as an uninterrupted one.
        from cinerecon.faults import ENVIRONMENT, fault_class

        per_pass = max(1, int(self.settings.get("subjects_per_pass", 8)))
        first = self.order.index(subject) // per_pass * per_pass
        ids = self.order[first:first + per_pass]
        try:
            self._decode(ids)
        except Exception as exc:
            if len(ids) == 1 or fault_class(exc) == ENVIRONMENT:  # (out of memory: the job is retried)
                self.failed[subject] = exc
                raise
            log.warning("a pass of %d subjects failed (%s); decoding them one by one", len(ids), exc)
            for s in ids:  # so that one bad subject fails alone
                try:
                    self._decode([s])
                except Exception as one:
                    if fault_class(one) == ENVIRONMENT:
                        raise
                    self.failed[s] = one
            if subject in self.failed:
                raise self.failed[subject]

    def _decode(self, ids: list) -> None:
        started = time.perf_counter()
        steps, batch = self.settings["ddim_steps"], self.settings["inference_batch_size"]
        images = np.concatenate([self.subjects[s]["images"] for s in ids])
        clip = bool(self.settings.get("clip_x0", True))
        codes = encode_slices(self.model, images, steps, batch, self.device, self.settings.get("refine", 0), clip)
        parts, spans, first, offset = [], {}, 0, 0
        for s in ids:
            meta = self.subjects[s]
            z, n = meta["n_slices"], len(meta["images"])
            self.codes[s] = {k: v.clone() if torch.is_tensor(v) else v
                             for k, v in select(codes, slice(first, first + n)).items()}
            first += n
            self.k[s] = z_upsampling_factor(float(np.linalg.norm(meta["affine"][:3, 2])), self.target_spacing_mm)
            for i, phase in enumerate(PHASES):
                stack = select(self.codes[s], slice(i * z, (i + 1) * z))
                kinds = [("volume", fine_codes(stack, self.k[s]))]
                if s in self.heldout_subjects:
                    kinds.append(("heldout", heldout_codes(stack)))
                for kind, part in kinds:
                    spans[s, phase, kind] = (offset, len(part["z_sem"]))
                    offset += len(part["z_sem"])
                    parts.append(part)
        decoded = decode_codes(self.model, concatenate(parts), steps, batch, self.device, clip)
        labels = predict_slices(self.seg_model, decoded, batch_size=batch, device=self.device)
        for (s, phase, kind), (at, n) in spans.items():  # copies: the pass's arrays can go
            self.results.setdefault(s, {})[phase, kind] = (decoded[at:at + n, 0].copy(), labels[at:at + n].copy())
        seconds = time.perf_counter() - started
        self.pass_of.update({s: len(self.passes) for s in ids})
        # (no time in the record: it would make the same results differ in bytes; the log has it)
        self.passes.append({"subjects": len(ids), "slices_encoded": int(len(images)),
                            "slices_decoded": int(len(decoded))})
        log.info("encoded %d and decoded %d slices of %d subjects (%d DDIM steps) in %.1f s", len(images),
                 len(decoded), len(ids), steps, seconds)

    def write(self, subject: str, meta: dict, method: str, outputs: dict, latent_path) -> dict:
        """The subject's codes, ED/ES image and label volumes (fine grid) and recon.json."""
        volumes = {phase: self.result(subject, phase, "volume") for phase in PHASES}
        k = self.k[subject]
        save_codes(latent_path, self.codes.pop(subject), meta["frames"], meta["n_slices"])
        volume_affine = fine_affine(meta["affine"], k)
        for phase, (images, labels) in volumes.items():
            save_nifti(outputs[f"image_{phase}"], np.moveaxis(images, 0, -1).astype(np.float32), volume_affine)
            save_nifti(outputs[phase], np.moveaxis(labels, 0, -1), volume_affine, dtype=np.uint8)
            del self.results[subject][phase, "volume"]  # written: free the memory
        record = {"subject": subject, "method": method, "k": k, "pad_slices": pad_slices(k),
                  "n_slices": meta["n_slices"], "n_frames": meta["n_frames"],
                  "frames": dict(zip(PHASES, meta["frames"])), "pass": self.passes[self.pass_of[subject]],
                  # how the codes were made and decoded: they are only valid with the same settings
                  "ddim": {"steps": int(self.settings["ddim_steps"]), "refine": int(self.settings.get("refine", 0)),
                           "clip_x0": bool(self.settings.get("clip_x0", True))}}
        write_json(outputs["record"], record)
        return record

    def heldout(self, subject: str, meta: dict, method: str) -> pd.DataFrame:
        """Held-out-slice rows (cinerecon.metrics.heldout) of the subject at ED and ES."""
        z = meta["n_slices"]
        frames = []
        for i, phase in enumerate(PHASES):
            images, labels = self.result(subject, phase, "heldout")
            del self.results[subject][phase, "heldout"]
            real = meta["images"][i * z:(i + 1) * z, 0]
            frames.append(heldout_rows(subject, method, phase, images, labels, real, meta["labels"][i * z:(i + 1) * z]))
        return pd.concat(frames, ignore_index=True)

