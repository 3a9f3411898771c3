"""How a training run uses the machine: seeding and deterministic kernels, mixed precision.

- :func:`seeded`: seeds torch for the run and restores the caller's RNG and settings after.
  ``deterministic`` (the default, and what the tests and the demo use) forces deterministic
  kernels: on the CPU a run is then bit-for-bit reproducible, resumed or not. Without it,
  on a GPU, cuDNN's benchmark mode picks the fastest convolution algorithms for the
  shapes it meets (faster, not bit-reproducible).
- :class:`Precision`: ``fp32``, ``bf16`` (autocast to bfloat16: Ampere/Hopper GPUs, and CPUs;
  no loss scaling needed) or ``fp16`` (autocast to float16 with a GradScaler, which is saved
  with the training state). The weights stay float32 either way.
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@contextlib.contextmanager
def seeded(seed: int, device, deterministic: bool = True):
    """Seed torch inside; deterministic kernels or (``deterministic=False`` on CUDA) cuDNN
    benchmark mode. The previous settings and global RNG state are restored after.

    On CUDA some kernels (max-pool backward) have no deterministic version, so there
    determinism only warns instead of raising. Deterministic algorithms also fill new
    tensors with NaN by default, a debugging aid that doubles the cost of some steps on a
    CPU; nothing here reads uninitialised memory, so it is switched off inside.
    """
    device = torch.device(device)
    prev, prev_warn = torch.are_deterministic_algorithms_enabled(), \
        torch.is_deterministic_algorithms_warn_only_enabled()
    prev_benchmark = torch.backends.cudnn.benchmark
    det = getattr(torch.utils, "deterministic", None)
    prev_fill = getattr(det, "fill_uninitialized_memory", None)
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        if deterministic or device.type != "cuda":
            torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
            if prev_fill is not None:
                det.fill_uninitialized_memory = False
        else:
            torch.use_deterministic_algorithms(False)
            torch.backends.cudnn.benchmark = True
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(prev, warn_only=prev_warn)
            torch.backends.cudnn.benchmark = prev_benchmark
            if prev_fill is not None:
                det.fill_uninitialized_memory = prev_fill


class Precision:
    """Mixed precision of one training run on ``device``: ``with p.autocast(): loss = ...``,
    then ``p.step(loss, optimizer)`` (backward, optional gradient clipping, optimiser step;
    with fp16 through the GradScaler)."""

    def __init__(self, name: str = "fp32", device="cpu"):
        if name not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {name!r}")
        self.name, self.device = name, torch.device(device)
        self.dtype = _DTYPES.get(name)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=name == "fp16")

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, clip: float | None = None,
             parameters=None) -> None:
        self.scaler.scale(loss).backward()
        if clip:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(parameters, clip)
        self.scaler.step(optimizer)
        self.scaler.update()

    def state(self) -> dict:
        """Entries for a training-state snapshot's ``optimizers`` (the fp16 loss scale)."""
        return {"grad_scaler": self.scaler} if self.scaler.is_enabled() else {}


class IntervalMeans:
    """Means of per-step values over a logging interval, for training histories of one row
    every ``log_every`` steps (a row per step would be ~800,000 rows for a paper-scale GAN,
    carried in every saved state). NaN values (a regulariser not computed on that step) are
    left out; a value never seen in the interval is NaN. Its sums travel in saved states."""

    def __init__(self, names):
        self.names = tuple(names)
        self.sums = {n: [0.0, 0] for n in self.names}

    def add(self, **values) -> None:
        for name, value in values.items():
            if value == value:  # not NaN
                self.sums[name][0] += float(value)
                self.sums[name][1] += 1

    def take(self) -> dict:
        """The interval's means, and a fresh interval."""
        out = {n: (s / k if k else float("nan")) for n, (s, k) in self.sums.items()}
        self.sums = {n: [0.0, 0] for n in self.names}
        return out

    def state_dict(self) -> dict:
        return {"sums": {n: list(v) for n, v in self.sums.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.sums = {n: list(v) for n, v in state["sums"].items()}
