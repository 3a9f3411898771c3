"""Training data that streams: slices on disk, read batch by batch; batches a pure function of the step.

A paper-scale pre-training set does not fit in memory (DMCVR's 484,800 slices of 808
subjects are 18 GB of float32 at 96 px, 127 GB at 256 px; DeepRecon's 3.6 million slices
several times that). The file-level trainers therefore
write each subject's slices, as they are loaded, into a :class:`SliceStore` (a raw
array file and a JSON description) and the training loop reads only the rows of each
batch with ``os.pread``. Nothing is memory-mapped, so a process's resident memory does
not grow with the store either (benchmarks/bench_training_data.py).

:class:`BatchPlan` draws the rows of training step ``s`` from a generator seeded with
(seed, s) or, for epochs, (seed, epoch): a resumed run reads the batches an uninterrupted
run would, and DataLoader workers can read ahead without any shared RNG
(:func:`batches`).
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cinerecon.io.files import atomic_path

log = logging.getLogger(__name__)


class SliceStore:
    """An on-disk array (N, *shape) of one dtype: ``store[rows]`` reads those rows only.

    Rows are read in sorted order (whole runs of consecutive rows at once) and returned in
    the order asked. The file is opened lazily per process, so a store can be handed to
    DataLoader worker processes.
    """

    def __init__(self, path):
        self.path = Path(path)
        meta = json.loads(self.path.with_suffix(".json").read_text())
        self.dtype = np.dtype(meta["dtype"])
        self.shape = tuple(meta["shape"])
        self.meta = meta.get("meta", {})
        self._row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._fd, self._pid = None, None
        size = self.path.stat().st_size
        if size != len(self) * self._row_bytes:
            raise ValueError(f"{self.path}: {size} bytes, not the {len(self) * self._row_bytes} of "
                             f"its description {self.shape} {self.dtype}: a damaged store")

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self):
        return {**self.__dict__, "_fd": None, "_pid": None}

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __getitem__(self, rows) -> np.ndarray:
        if isinstance(rows, slice):
            rows = np.arange(len(self))[rows]
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"rows out of range for a store of {len(self)}")
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        out = np.empty((len(rows),) + self.shape[1:], dtype=self.dtype)
        flat = out.reshape(len(rows), self._row_bytes // self.dtype.itemsize).view(np.uint8)
        fd, start = self._file(), 0
        while start < len(sorted_rows):  # one read per run of consecutive rows
            stop = start + 1
            while stop < len(sorted_rows) and sorted_rows[stop] - sorted_rows[stop - 1] <= 1:
                stop += 1
            first, last = int(sorted_rows[start]), int(sorted_rows[stop - 1])
            data = _read_exactly(fd, (last - first + 1) * self._row_bytes, first * self._row_bytes, self.path)
            block = np.frombuffer(data, dtype=np.uint8).reshape(last - first + 1, self._row_bytes)
            flat[order[start:stop]] = block[sorted_rows[start:stop] - first]
            start = stop
        return out


def _read_exactly(fd: int, n: int, offset: int, path) -> bytes:
    """n bytes at offset: pread may return fewer (network file systems, signals), so read on."""
    parts, got = [], 0
    while got < n:
        part = os.pread(fd, n - got, offset + got)
        if not part:
            raise OSError(f"{path}: ends {n - got} bytes early at offset {offset + got}")
        parts.append(part)
        got += len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def write_stores(folder, chunks: Iterable[dict], dtypes: dict, meta: dict | None = None) -> dict[str, SliceStore]:
    """Write aligned stores ``{folder}/{name}.bin`` in one pass over ``chunks``, each a dict
    {name: array (n_i, *shape)} of one subject (images and labels, say). Chunks are consumed
    one at a time, so memory holds one subject's slices, never the cohort's. Each store's
    description is written after its data: only a complete store has one."""
    folder = Path(folder)
    dtypes = {name: np.dtype(dt) for name, dt in dtypes.items()}
    counts, shapes = dict.fromkeys(dtypes, 0), dict.fromkeys(dtypes)
    for name in dtypes:
        (folder / f"{name}.json").unlink(missing_ok=True)
    with contextlib.ExitStack() as stack:
        files = {name: stack.enter_context(open(stack.enter_context(atomic_path(folder / f"{name}.bin")), "wb"))
                 for name in dtypes}
        for chunk in chunks:
            for name, f in files.items():
                arr = np.ascontiguousarray(chunk[name], dtype=dtypes[name])
                if shapes[name] is None:
                    shapes[name] = arr.shape[1:]
                elif arr.shape[1:] != shapes[name]:
                    raise ValueError(f"{name}: slices of shape {arr.shape[1:]} after {shapes[name]}: all must match")
                f.write(arr.tobytes())
                counts[name] += len(arr)
        if any(shape is None for shape in shapes.values()):
            raise ValueError("no training slices")
    for name, dtype in dtypes.items():
        with atomic_path(folder / f"{name}.json") as tmp:
            tmp.write_text(json.dumps({"dtype": dtype.str, "shape": [counts[name], *shapes[name]],
                                       "meta": meta or {}}))
    return {name: SliceStore(folder / f"{name}.bin") for name in dtypes}


def write_store(path, chunks: Iterable[np.ndarray], dtype, meta: dict | None = None) -> SliceStore:
    """One store at ``path`` (``{name}.bin``) from chunks (n_i, *shape): see :func:`write_stores`."""
    path = Path(path)
    return write_stores(path.parent, ({path.stem: c} for c in chunks), {path.stem: dtype}, meta)[path.stem]


def cached_stores(folder, fingerprint: str, build) -> dict[str, SliceStore]:
    """The stores of ``folder`` if they were built for ``fingerprint``; otherwise the folder is
    emptied and ``build(folder)`` writes them (returning their names). A training job that is
    killed and restarted therefore reads its cohort once, not once per attempt."""
    folder = Path(folder)
    done = folder / "complete.json"
    if done.exists():
        try:
            record = json.loads(done.read_text())
            if record.get("fingerprint") == fingerprint:
                return {name: SliceStore(folder / f"{name}.bin") for name in record["stores"]}
        except (ValueError, OSError) as exc:  # damaged: rebuilt below
            log.warning("%s: %s; rebuilding it", folder, exc)
    # Built in a fresh folder and renamed into place: what a killed build or a still-open file
    # of an earlier attempt (NFS keeps .nfs* files of those) leaves behind never blocks a retry.
    building = folder.with_name(f"{folder.name}.building-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    building.mkdir(parents=True)
    try:
        names = build(building)
        (building / "complete.json").write_text(json.dumps({"fingerprint": fingerprint, "stores": list(names)}))
        old = folder.with_name(f"{folder.name}.old-{uuid.uuid4().hex[:8]}")
        if folder.exists():
            os.replace(folder, old)
        os.replace(building, folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    for stale in folder.parent.glob(f"{glob.escape(folder.name)}.building-*"):  # of killed builds
        shutil.rmtree(stale, ignore_errors=True)
    return {name: SliceStore(folder / f"{name}.bin") for name in names}


# ---- which rows each step reads ----------------------------------------------------------
def _generator(seed: int, index: int) -> torch.Generator:
    # Distinct, well-mixed seeds per (seed, index); torch seeds are 64-bit.
    return torch.Generator().manual_seed((int(seed) * 0x9E3779B97F4A7C15 + int(index) * 0xBF58476D1CE4E5B9 + 1)
                                         % (1 << 63))


class BatchPlan:
    """The rows read by each training step (0-based), from ``n`` rows in batches of ``batch_size``.

    ``epochs`` (default): every epoch is a fresh permutation (seeded by seed and epoch), cut
    into batches; ``drop_last`` drops an epoch's last, smaller batch (unless it is the only
    one). ``replacement``: every step draws ``batch_size`` rows with replacement (seeded by
    seed and step), as GAN training does.
    """

    def __init__(self, n: int, batch_size: int, seed: int, mode: str = "epochs", drop_last: bool = False):
        if n < 1 or batch_size < 1:
            raise ValueError("need at least one row and batch_size >= 1")
        if mode not in ("epochs", "replacement"):
            raise ValueError(f"unknown mode {mode!r}")
        self.n, self.batch_size, self.seed, self.mode = n, batch_size, seed, mode
        full, rest = divmod(n, batch_size)
        self.steps_per_epoch = (full or 1) if drop_last else full + (rest > 0)
        self._perm_epoch, self._perm = None, None

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def rows(self, step: int) -> torch.Tensor:
        if self.mode == "replacement":
            return torch.randint(self.n, (self.batch_size,), generator=_generator(self.seed, step))
        epoch, pos = divmod(step, self.steps_per_epoch)
        if self._perm_epoch != epoch:
            self._perm, self._perm_epoch = torch.randperm(self.n, generator=_generator(self.seed, epoch)), epoch
        return self._perm[pos * self.batch_size:(pos + 1) * self.batch_size]

    def __call__(self, start: int, stop: int) -> Iterator[list[int]]:
        """Row lists of steps start .. stop - 1 (a DataLoader batch_sampler)."""
        for step in range(start, stop):
            yield self.rows(step).tolist()


class _Rows(Dataset):
    """Rows of one or several aligned arrays/stores as tensors (batched reads: __getitems__)."""

    def __init__(self, arrays: tuple):
        self.arrays = arrays

    def __len__(self):
        return len(self.arrays[0])

    def __getitems__(self, rows: list[int]):
        return tuple(torch.from_numpy(np.ascontiguousarray(a[np.asarray(rows)])) for a in self.arrays)

    def __getitem__(self, row):
        return self.__getitems__([row])


class _Steps:
    """A batch_sampler over steps start .. stop - 1 of a plan (re-iterable, sized)."""

    def __init__(self, plan: BatchPlan, start: int, stop: int):
        self.plan, self.start, self.stop = plan, start, stop

    def __iter__(self):
        return self.plan(self.start, self.stop)

    def __len__(self):
        return max(0, self.stop - self.start)


def _keep(batch):
    return batch


def batches(arrays, plan: BatchPlan, start: int, stop: int, workers: int = 0,
            pin_memory: bool = False) -> Iterator[tuple[torch.Tensor, ...]]:
    """Tensors of each step's rows for steps start .. stop - 1, from one array/store or a tuple of
    aligned ones (images and labels). ``workers`` > 0 reads ahead in that many processes
    (a torch DataLoader); the batches are the same either way."""
    arrays = arrays if isinstance(arrays, tuple) else (arrays,)
    if stop <= start:
        return iter(())
    # A private generator: a DataLoader draws its workers' base seed when iterated, which from the
    # global RNG would shift every later draw of a resumed run.
    loader = DataLoader(_Rows(arrays), batch_sampler=_Steps(plan, start, stop), collate_fn=_keep,
                        num_workers=workers, pin_memory=pin_memory, generator=torch.Generator().manual_seed(0),
                        prefetch_factor=4 if workers else None, persistent_workers=False)
    return iter(loader)
