"""Weights-only checkpoints shared by every model: {"format", "state_dict", "config"}.

Tensors and plain types only, written atomically, read with torch.load(weights_only=True),
so loading a checkpoint never runs pickled code. `format` tells the model kinds apart.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import torch
from torch import nn

from cinerecon.io.files import atomic_path


def save_weights(model: nn.Module, config: dict, fmt: str, path) -> None:
    payload = {"format": fmt,
               "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
               "config": config}
    # Serialised in memory: torch.save names the archive's records after the file it writes,
    # and the temporary file's name holds the PID, so saving to it directly would make
    # the same weights differ in bytes from run to run.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def load_weights(path, fmt: str, what: str, device="cpu") -> dict:
    """The payload of a `save_weights` file of format `fmt` (error naming `what` otherwise)."""
    payload = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise ValueError(f"{path}: not a cinerecon {what} checkpoint")
    return payload


def load_model(path, fmt: str, what: str, build: Callable[[dict], nn.Module], device="cpu") -> nn.Module:
    """The model of a `save_weights` file: build(config) with its weights, in eval mode on device."""
    payload = load_weights(path, fmt, what, device)
    model = build(payload["config"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()
