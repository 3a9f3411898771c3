"""Peak memory of loading training data, for cohorts of 50 and 500 synthetic subjects.

One synthetic subject's SAX cine, cropped to 96 x 96 (10 slices, 50 frames, as the demo's
crops), is hard-linked N times (no disk cost). For each N, a fresh process:

- streamed (the pipeline): writes every 5th frame of every subject into an on-disk slice
  store (cinerecon.latent.pretraining.cine_store) and reads 200 training batches of 16
  from it (cinerecon.models.slice_store.batches);
- in memory (how training data was loaded before): concatenates the same slices in RAM.

Prints peak RSS (MiB) per way and cohort size: the streamed figure stays flat with N.
Usage: python benchmarks/bench_training_data.py [--subjects 50 500]
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def make_cohort(folder: Path, n: int) -> dict:
    from cinerecon.io.nifti import load_nifti, save_nifti
    from cinerecon.synth.cohort import generate_subject
    from cinerecon.synth.scanner import AcquisitionConfig

    one = folder / "one.nii.gz"
    if not one.exists():
        subject = generate_subject("SYN0000", 1, 0, folder / "SYN0000", AcquisitionConfig(n_frames=50))
        image, affine, _ = load_nifti(subject["sa"], "SYN0000")
        x0, y0 = (image.shape[0] - 96) // 2, (image.shape[1] - 96) // 2
        save_nifti(one, image[x0:x0 + 96, y0:y0 + 96], affine)
    paths = {}
    for i in range(n):
        path = folder / f"S{i:05d}.nii.gz"
        if not path.exists():
            os.link(one, path)
        paths[f"S{i:05d}"] = path
    return paths


def measure(way: str, folder: Path, n: int) -> None:
    """In this process: load the cohort one way, print peak RSS in MiB."""
    import torch

    from cinerecon.latent.pretraining import cine_store, subject_cine_slices
    from cinerecon.models.resume import TrainingJob
    from cinerecon.models.slice_store import BatchPlan, batches

    torch.set_num_threads(1)
    paths = make_cohort(folder, n)
    if way == "streamed":
        job = TrainingJob(folder / f"model{n}.pt", f"bench{n}")
        store = cine_store(job, paths, frame_stride=5)
        for (x,) in batches(store, BatchPlan(len(store), 16, 0, mode="replacement"), 0, 200):
            assert x.shape[0] == 16
        slices = len(store)
        job.finish()
    else:
        images = np.concatenate([subject_cine_slices(s, p, 5) for s, p in paths.items()])
        slices = len(images)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{way:<10} {n:>5} subjects {slices:>7} slices  peak RSS {peak:8.0f} MiB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--measure", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        way, folder, n = args.measure
        measure(way, Path(folder), int(n))
        return
    with tempfile.TemporaryDirectory() as tmp:
        make_cohort(Path(tmp), 1)
        for way in ("streamed", "in-memory"):
            for n in args.subjects:
                subprocess.run([sys.executable, __file__, "--measure", way, tmp, str(n)], check=True)


if __name__ == "__main__":
    main()
