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


def _fractions(t, ref: torch.Tensor) -> torch.Tensor:
    """t (a scalar or one fraction per sample, (N,)) shaped to broadcast over ref (N, ...)."""
    t = torch.as_tensor(t, dtype=ref.dtype, device=ref.device)
    if t.ndim == 0:
        return t
    if t.shape != (ref.shape[0],):
        raise ValueError(f"t must be a scalar or ({ref.shape[0]},), got {tuple(t.shape)}")
    return t.reshape((-1,) + (1,) * (ref.ndim - 1))


def lerp(a: torch.Tensor, b: torch.Tensor, t) -> torch.Tensor:
    """(1 - t) a + t b per sample; t a scalar or (N,); exact at t = 0 and t = 1."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    tt = _fractions(t, a)
    return (1 - tt) * a + tt * b


def slerp(a: torch.Tensor, b: torch.Tensor, t, eps: float = 1e-6) -> torch.Tensor:
    """Spherical interpolation of per-sample flattened vectors (N, ...), t a scalar or (N,):
    sin((1-t) theta)/sin(theta) a + sin(t theta)/sin(theta) b, theta the angle between a_n and
    b_n (computed in float64). Where sin(theta) < ``eps`` (parallel or antipodal vectors) it
    falls back to :func:`lerp`. Exact at t = 0 and t = 1; keeps the norm of equal-norm vectors."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    af, bf = a.reshape(a.shape[0], -1).double(), b.reshape(b.shape[0], -1).double()
    tt = _fractions(t, af)
    cos = (af * bf).sum(1, keepdim=True) / (af.norm(dim=1, keepdim=True) * bf.norm(dim=1, keepdim=True))
    theta = torch.arccos(cos.nan_to_num(1.0).clamp(-1.0, 1.0))
    sin = torch.sin(theta)
    ok = sin > eps
    safe = torch.where(ok, sin, torch.ones_like(sin))
    wa = torch.where(ok, torch.sin((1 - tt) * theta) / safe, 1 - tt)
    wb = torch.where(ok, torch.sin(tt * theta) / safe, tt)
    shape = (-1,) + (1,) * (a.ndim - 1)
    return wa.to(a.dtype).reshape(shape) * a + wb.to(a.dtype).reshape(shape) * b


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
