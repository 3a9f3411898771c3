"""The MAE's per-subject tensor files and the training data read from them.

One `.npz` per subject (cinerecon.mae.inputs.build_inputs's arrays plus the phenotype
targets): at the paper's size (9 planes x 50 frames x 128 x 128, float16) ~15 MB, so
50,000 subjects do not fit in memory; `MaeData` reads them on demand and keeps as many
as its memory budget holds (the demo's all).
"""

from __future__ import annotations

import io
import json
from collections import OrderedDict

import numpy as np

from cinerecon.io.files import atomic_path

# The paper's Table 1 phenotypes, in the synthetic truth's names (Bai et al. 2020's)
TARGETS = ("LVM", "RVEF", "RVEDV", "LASV", "RAEF")
UNITS = {"LVM": "g", "RVEF": "%", "RVEDV": "mL", "LASV": "mL", "RAEF": "%"}
ARRAYS = ("image", "labels", "labelled", "carried", "sax_slices", "frames")


def targets_from(truth_json=None, label_row: dict | None = None) -> tuple[np.ndarray, str]:
    """(targets (5,), source): the synthetic truth's phenotypes; else those the manual labels
    give (cinerecon.mae.stages.label_phenotypes; a phenotype they cannot give: NaN); else all NaN."""
    if truth_json is not None:
        truth = json.loads(open(truth_json).read())
        return np.array([float(truth[k]) for k in TARGETS]), "truth"
    if label_row is not None:
        return np.array([float(label_row.get(k, np.nan)) for k in TARGETS]), "labels"
    return np.full(len(TARGETS), np.nan), "none"


def write_subject(path, arrays: dict, targets: np.ndarray, source: str) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays, targets=targets, target_source=np.array(source))
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def read_subject(path, keys=None) -> dict:
    """A subject's arrays (only `keys`, if given: npz members are read one by one)."""
    with np.load(path) as f:
        return {k: f[k] for k in (f.files if keys is None else keys)}


class MaeData:
    """Subjects' tensor files, each array read on demand (only the arrays a training uses),
    with a least-recently-used cache of at most `memory_bytes` (per process: a DataLoader
    worker holds its own)."""

    def __init__(self, paths: dict, memory_bytes: float = 4e9):
        self.subjects = list(paths)
        self.paths = [paths[s] for s in self.subjects]
        self.memory_bytes = memory_bytes
        self._cache: OrderedDict = OrderedDict()
        self._cached_bytes = 0
        self.targets = np.stack([read_subject(p, ["targets"])["targets"] for p in self.paths]) \
            if self.paths else np.zeros((0, len(TARGETS)))

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, i: int, key: str) -> np.ndarray:
        if (i, key) in self._cache:
            self._cache.move_to_end((i, key))
            return self._cache[(i, key)]
        array = read_subject(self.paths[i], [key])[key]
        while self._cache and self._cached_bytes + array.nbytes > self.memory_bytes:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= old.nbytes
        if array.nbytes <= self.memory_bytes:
            self._cache[(i, key)] = array
            self._cached_bytes += array.nbytes
        return array

    def batch(self, key: str, rows) -> np.ndarray:
        return np.stack([self.get(int(i), key) for i in rows])

    def array(self, key: str) -> "SubjectArray":
        return SubjectArray(self, key)


class SubjectArray:
    """One array of every subject, indexed by a row list like a numpy array (what
    cinerecon.models.slice_store.batches reads, in DataLoader workers too)."""

    def __init__(self, data: MaeData, key: str):
        self.data, self.key = data, key

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, rows) -> np.ndarray:
        return self.data.batch(self.key, np.atleast_1d(rows))
