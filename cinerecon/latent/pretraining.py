"""Pre-training data of the generative models: every k-th frame of every slice of the
pre-training subjects (labelled or not), streamed subject by subject into an on-disk store.

DeepRecon's G and E and DMCVR's autoencoder learn the appearance of cine slices, not labels,
so they pre-train on every non-test subject (`pretrain_splits`), as the papers do on
thousands of mostly unlabelled UK Biobank subjects. Memory holds one subject's cine at a
time; the training loop reads batches from the store (cinerecon.models.slice_store).
"""

from __future__ import annotations

import logging

import numpy as np

from cinerecon.io.nifti import InputError, load_nifti, nifti_geometry
from cinerecon.models.data import frames_to_slices, normalise_intensity
from cinerecon.models.model_grid import ModelGrid
from cinerecon.models.resume import TrainingJob
from cinerecon.models.slice_store import SliceStore, cached_stores, write_store

log = logging.getLogger(__name__)


def subject_cine_slices(subject: str, path, frame_stride: int = 1, size: int | None = None,
                        crop: int | None = None) -> np.ndarray:
    """Every `frame_stride`-th frame of every slice of one subject, (N, 1, X, Y) in [-1, 1];
    with `size`, square `crop` x `crop` slices (the pre-training subjects' crop size)
    resampled to size x size over the same field of view (cinerecon.models.model_grid)."""
    image, _, _ = load_nifti(path, subject)
    frames = range(0, image.shape[3], frame_stride)
    slices = frames_to_slices(normalise_intensity(image), frames)[:, None].astype(np.float32, copy=False)
    if size is None:
        return slices
    crop = crop or slices.shape[-1]
    if slices.shape[-2:] != (crop, crop):
        raise InputError(subject, path, f"in-plane size {slices.shape[-2]}x{slices.shape[-1]}: the pre-training "
                                        f"slices must be square crops of one size, {crop} x {crop} (crop.sax_size)")
    return ModelGrid(crop, size).to_model(slices).numpy()


def cine_store(job: TrainingJob, image_paths: dict, frame_stride: int = 1, size: int | None = None) -> SliceStore:
    """The pre-training slices of `image_paths` ({subject: SAX cine}) in the job's data folder,
    written once per fingerprint (a restarted job reuses them), resampled to `size` if given.
    Stored as float16: half the disk of float32 for millions of slices, and 11 bits of
    precision over [-1, 1] (steps of at most 0.0005) are finer than the models can tell
    apart; batches are read as float32."""
    def build(folder):
        first = next(iter(image_paths))
        crop = nifti_geometry(image_paths[first], first)[0][0] if size else None
        chunks = (subject_cine_slices(s, path, frame_stride, size, crop) for s, path in image_paths.items())
        write_store(folder / "images.bin", chunks, np.float16, meta={"subjects": len(image_paths)})
        return ["images"]

    if not image_paths:
        raise ValueError("no pre-training subjects")
    log.info("pre-training subjects (%d): %s", len(image_paths), " ".join(image_paths))
    key = f"{job.fingerprint}:cine:{frame_stride}" + (f":{size}px" if size else "")
    return cached_stores(job.data_folder, key, build)["images"]
