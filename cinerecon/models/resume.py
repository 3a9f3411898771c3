"""Resumable training: the whole state of a training run in a side file, saved every few minutes.

A multi-day GPU training killed by a SLURM time limit, a node failure or preemption restarts
from its last saved state instead of step 0. The state file sits beside the model it will
produce (``.model.training-state.pt`` for ``model.pt``): it is not a Snakemake output, so
Snakemake does not delete it when the killed job's outputs are cleaned up. It holds

- a fingerprint of what the run trains on (settings, subjects, input digests, the cinerecon
  code): a state saved for other settings, other data or other code is discarded, never
  resumed (updating cinerecon mid-training therefore restarts it);
- the step reached, every module's and optimiser's state (EMA and grad scaler included),
  the RNG states (the global CPU and CUDA generators and the trainer's own generators),
  the history so far and whatever else the trainer needs (best epoch, running sums).

Batches are a pure function of (seed, step) (`cinerecon.models.slice_store.BatchPlan`), so
the data order needs no state of its own. With deterministic kernels (CPU), a resumed run
ends with the same weights, bit for bit, as an uninterrupted one (tests/test_resume.py).
The trainer removes the file once the finished model is written (:meth:`TrainingState.clear`).
SIGTERM (what SLURM sends at the time limit, KillWait seconds before SIGKILL) saves the
state after the current step and stops the job, so an attempt loses one step, not minutes.
"""

from __future__ import annotations

import io
import logging
import shutil
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cinerecon.io.files import atomic_path
from cinerecon.faults import Terminated
from cinerecon.journal import canonical, code_version, content_digest, sha1

log = logging.getLogger(__name__)
STATE_FORMAT = "cinerecon.training-state/1"
DEFAULT_EVERY_SECONDS = 20 * 60


def state_path_for(model_path) -> Path:
    """The side file of the model a training job writes: ``.{name}.training-state.pt`` beside it."""
    model_path = Path(model_path)
    return model_path.with_name(f".{model_path.stem}.training-state.pt")


def fingerprint(settings, subjects=(), input_files=()) -> str:
    """What a saved state was trained on: the job's settings, its subjects, its input files'
    bytes and the cinerecon code."""
    return sha1(canonical(settings), canonical(sorted(subjects)), code_version(),
                *(content_digest(path) for path in sorted(map(str, input_files))))


def rng_state() -> dict:
    """The global torch generators: CPU, and every CUDA device's when CUDA is in use."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _cpu(obj):
    """Tensors of a nested state moved to the CPU and detached (the file loads on any device)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


def snapshot(step: int, modules: dict | None = None, optimizers: dict | None = None,
             generators: dict | None = None, **extra) -> dict:
    """The state of a run after ``step`` optimiser steps: modules' and optimisers' state dicts
    (anything with ``state_dict()``: an EMA, a GradScaler), torch.Generator states, the global
    RNG and ``extra`` (plain data and tensors: history, best weights, running sums)."""
    return {"step": int(step),
            "modules": {k: _cpu(m.state_dict()) for k, m in (modules or {}).items()},
            "optimizers": {k: _cpu(o.state_dict()) for k, o in (optimizers or {}).items()},
            "generators": {k: g.get_state() for k, g in (generators or {}).items()},
            "rng": rng_state(), "extra": _cpu(extra)}


def restore(state: dict, modules: dict | None = None, optimizers: dict | None = None,
            generators: dict | None = None) -> dict:
    """Load a :func:`snapshot` into the live objects (same keys); return its ``extra``."""
    for k, m in (modules or {}).items():
        m.load_state_dict(state["modules"][k])
    for k, o in (optimizers or {}).items():
        o.load_state_dict(state["optimizers"][k])
    for k, g in (generators or {}).items():
        g.set_state(state["generators"][k])
    set_rng_state(state["rng"])
    return state["extra"]


class TrainingState:
    """The side file of one training run: load it at the start, save it when due, clear it at the end.

    ``every_seconds`` and ``every_steps`` (either may be None) say when :meth:`due` is true;
    the clock starts when the object is made. Saving costs one serialisation of the state
    (seconds for a paper-sized model), so minutes apart is the right scale on a GPU.
    """

    def __init__(self, path, fingerprint: str, every_seconds: float | None = DEFAULT_EVERY_SECONDS,
                 every_steps: int | None = None, clock: Callable[[], float] = time.monotonic):
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.every_seconds, self.every_steps = every_seconds, every_steps
        self._clock = clock
        self._last_save = clock()
        self._stop = None  # the signal asking this process to stop, once received
        self._previous_handler = None

    def _on_sigterm(self, signum, frame):
        self._stop = signal.Signals(signum).name

    @classmethod
    def beside(cls, model_path, fingerprint: str, **kwargs) -> "TrainingState":
        return cls(state_path_for(model_path), fingerprint, **kwargs)

    def load(self) -> dict | None:
        """The saved state of this run, or None (no file, or one saved for another fingerprint,
        which is removed; an unreadable file, e.g. from a full disk, is ignored and replaced)."""
        try:  # from now on SIGTERM saves the state at the end of the step, then stops
            previous = signal.signal(signal.SIGTERM, self._on_sigterm)
            if self._previous_handler is None:
                self._previous_handler = previous
        except ValueError:  # not the main thread
            pass
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a damaged state only costs the steps since the last save
            log.warning("%s: unreadable training state (%s); starting from step 0", self.path, exc)
            return None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT \
                or state.get("fingerprint") != self.fingerprint:
            log.info("%s was saved for other settings, data or code; starting from step 0", self.path)
            self.path.unlink(missing_ok=True)
            return None
        log.info("resuming from %s at step %d", self.path, state["step"])
        return state

    def due(self, step: int) -> bool:
        if self._stop:
            return True
        if self.every_steps and step % self.every_steps == 0:
            return True
        return self.every_seconds is not None and self._clock() - self._last_save >= self.every_seconds

    def save(self, state: dict) -> None:
        """Write ``state`` (a :func:`snapshot`) atomically: a kill while saving keeps the previous one."""
        buffer = io.BytesIO()
        torch.save({"format": STATE_FORMAT, "fingerprint": self.fingerprint, **state}, buffer)
        with atomic_path(self.path) as tmp:
            tmp.write_bytes(buffer.getvalue())
        self._last_save = self._clock()

    def maybe_save(self, step: int, build: Callable[[], dict]) -> bool:
        """Save ``build()`` if a save is due after ``step``; whether it was."""
        if not self.due(step):
            return False
        self.save(build())
        if self._stop:
            raise Terminated(f"received {self._stop}: training state saved at step {step} in {self.path}")
        return True

    def clear(self) -> None:
        """Remove the side file (the run is finished, or it was saved for another run) and give
        SIGTERM back its previous handler."""
        self.path.unlink(missing_ok=True)
        if self._previous_handler is not None:
            try:
                signal.signal(signal.SIGTERM, self._previous_handler)
            except ValueError:
                pass
            self._previous_handler = None


@dataclass
class TrainingJob:
    """What a file-level trainer needs from the job that runs it: the model it writes (the side
    state and the slice cache live beside it), the fingerprint of its settings and inputs, how
    often to save (None: never), how many DataLoader workers read ahead and whether kernels
    must be deterministic (:func:`cinerecon.models.runtime.seeded`).

    :meth:`finish`, called once the finished model is written, removes the side state and
    the cache; a job killed before then leaves both for its restart.
    """

    model_path: Path
    fingerprint: str = ""
    every_seconds: float | None = DEFAULT_EVERY_SECONDS
    every_steps: int | None = None
    workers: int = 0
    deterministic: bool = True
    _state: TrainingState | None = field(default=None, init=False, repr=False)

    @classmethod
    def transient(cls, model_path) -> "TrainingJob":
        """A job for a direct call (no workflow rule): never saved, its data cache its own."""
        return cls(Path(model_path), f"transient-{uuid.uuid4().hex}", every_seconds=None)

    @property
    def state(self) -> TrainingState:
        if self._state is None:
            self._state = TrainingState.beside(self.model_path, self.fingerprint, every_seconds=self.every_seconds,
                                               every_steps=self.every_steps)
        return self._state

    @property
    def data_folder(self) -> Path:
        """The on-disk training slices of this job (cinerecon.models.slice_store.cached_stores)."""
        path = Path(self.model_path)
        return path.with_name(f".{path.stem}.training-data")

    def finish(self) -> None:
        self.state.clear()
        shutil.rmtree(self.data_folder, ignore_errors=True)


def training_job(model_path, settings, subjects, input_files, every_minutes: float | None = None,
                 workers: int = 0, deterministic: bool = True) -> TrainingJob:
    """The :class:`TrainingJob` of a training rule: fingerprint from its settings, subjects and inputs."""
    every = DEFAULT_EVERY_SECONDS if every_minutes is None else (every_minutes * 60 if every_minutes > 0 else None)
    return TrainingJob(Path(model_path), fingerprint(settings, subjects, input_files), every_seconds=every,
                       workers=workers, deterministic=deterministic)
