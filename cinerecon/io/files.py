"""Atomic file writing: a failed or killed job never leaves a half-written output."""

from __future__ import annotations

import glob
import json
import os
from contextlib import contextmanager
from pathlib import Path


def _stem_suffix(path: Path) -> tuple[str, str]:
    suffix = "".join(path.suffixes)
    return (path.name[: len(path.name) - len(suffix)] if suffix else path.name), suffix


def temporaries(path) -> list[Path]:
    """Temporary files of `path` left by writers that were killed (see atomic_path)."""
    path = Path(path)
    stem, suffix = _stem_suffix(path)
    if not path.parent.is_dir():
        return []
    return sorted(path.parent.glob(f".{glob.escape(stem)}.tmp*{glob.escape(suffix)}"))


def remove_with_temporaries(paths) -> None:
    """Remove files and any temporary file a killed writer left for them."""
    for path in paths:
        Path(path).unlink(missing_ok=True)
        for tmp in temporaries(path):
            tmp.unlink(missing_ok=True)


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path` (same suffixes); rename it into place on success.

    Temporary files of earlier writers of `path` (killed before they could clean up) are
    removed first: each output has one writer at a time, so they are stale.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stem, suffix = _stem_suffix(path)
    tmp = path.with_name(f".{stem}.tmp{os.getpid()}{suffix}")
    for stale in temporaries(path):
        stale.unlink(missing_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_tsv(path, frame) -> None:
    """Write a pandas DataFrame as TSV with fixed float formatting (reproducible bytes)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.6f")


def write_history(path, history: list[dict]) -> None:
    """A training history as TSV, without its wall-clock column: timings go to the log, so
    that the same seed gives the same bytes."""
    import pandas as pd

    write_tsv(path, pd.DataFrame(history).drop(columns=["seconds"], errors="ignore"))


def write_parquet(path, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def raw_nifti_files(folder) -> list[Path]:
    """The NIfTI files of a subject's raw folder (absent folder: none)."""
    folder = Path(folder)
    return sorted(folder.glob("*.nii*")) if folder.is_dir() else []
