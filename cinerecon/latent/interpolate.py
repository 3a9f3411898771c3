"""Latent codes of the acquired slices -> latent codes of every fine-grid slice.

The fine grid is the one every reconstruction method shares (cinerecon.baselines.grid):
acquired slice j is fine slice j*k + k//2, the k-1 slices between two acquired ones are
interpolated, and the half-slab beyond each end slice repeats it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from cinerecon.baselines.grid import fine_positions, slice_pairs


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Linear interpolation with t broadcast over the trailing dimensions of a and b."""
    t = t.reshape(t.shape + (1,) * (a.dim() - t.dim()))
    return a + (b - a) * t


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation of per-sample flattened vectors; lerp where they are parallel.

    Exact at t = 0 and t = 1; keeps the norm of unit vectors.
    """
    shape = torch.broadcast_shapes(a.shape, b.shape)
    a, b = a.expand(shape).reshape(shape[0], -1), b.expand(shape).reshape(shape[0], -1)
    t = t.reshape(-1, 1).to(a.dtype)
    na, nb = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
    cos = ((a * b).sum(1, keepdim=True) / (na * nb).clamp_min(eps)).clamp(-1, 1)
    theta = torch.acos(cos)
    sin = torch.sin(theta)
    parallel = sin.abs() < 1e-4
    safe = torch.where(parallel, torch.ones_like(sin), sin)
    wa = torch.where(parallel, 1 - t, torch.sin((1 - t) * theta) / safe)
    wb = torch.where(parallel, t, torch.sin(t * theta) / safe)
    out = wa * a + wb * b
    out = torch.where(t == 0, a, torch.where(t == 1, b, out))
    return out.reshape(shape)


def fine_latents(latents: torch.Tensor, k: int,
                 combine: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] = lerp):
    """(Z, ...) codes of the acquired slices -> (M, ...) codes of the fine grid, M = (Z-1)k+1+2(k//2).

    Acquired positions receive their own code unchanged (not a combination of it).
    """
    n = latents.shape[0]
    out = latents.new_empty((len(fine_positions(n, k)),) + tuple(latents.shape[1:]))
    for idx, j, ts in slice_pairs(n, k):
        index = torch.as_tensor(idx)
        if np.all(ts == 0):
            out[index] = latents[j].expand((len(idx),) + tuple(latents.shape[1:]))
        else:
            t = torch.as_tensor(ts, dtype=latents.dtype)
            a = latents[j].expand((len(idx),) + tuple(latents.shape[1:]))
            b = latents[j + 1].expand((len(idx),) + tuple(latents.shape[1:]))
            out[index] = combine(a, b, t)
    return out
