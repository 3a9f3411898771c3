"""Shared by the benchmark scripts: generate one synthetic subject and crop it; time a call;
another revision's code to measure against (before/after in one run)."""

import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from cinerecon.io.subject import VIEWS
from cinerecon.preprocess.crop import crop_label_files, crop_subject_files
from cinerecon.synth.cohort import generate_subject


def generated_and_cropped(subject, seed, index, acq, folder, sax_size=(128, 128), lax_size=(128, 128)):
    """Write a subject and its crops under folder; return (generated files, crop dir, centring report)."""
    out = Path(folder) / subject
    files = generate_subject(subject, seed, index, out, acq)
    crop = out / "crop"
    crop_subject_files(subject, {v: files[v] for v in VIEWS}, {v: crop / f"{v}.nii.gz" for v in VIEWS},
                       crop / "crop.json", sax_size, lax_size)
    report = crop_label_files(subject, {v: files[f"label_{v}"] for v in VIEWS}, crop / "crop.json",
                              {v: crop / f"label_{v}.nii.gz" for v in VIEWS}, crop / "centring.json")
    return files, crop, report


def timed(fn, device="cpu") -> float:
    """Wall-clock seconds of fn(), waiting for queued GPU work on both sides."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


REPO = Path(__file__).resolve().parents[1]


@contextmanager
def worktree(rev: str):
    """A temporary git worktree of this repository at revision `rev`: run its code with its
    folder first on PYTHONPATH (ahead of the installed cinerecon, this checkout's)."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=REPO, check=True,
                       capture_output=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=False)
