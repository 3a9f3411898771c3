"""DMCVR / DiffAE: a conditional DDIM autoencoder for SAX slices (He et al., MICCAI 2023).

Three latent codes describe a slice x0 (an image (1, H, W) in [-1, 1]):

* ``z_sem`` (global semantics): a vector from the semantic encoder E_sem, the
  encoder half of the denoiser's U-Net without time conditioning, then global
  average pooling and a linear layer (Preechakul et al. 2022). Trained end to end
  with the denoiser by the simple loss ||eps - eps_theta(x_t, t, z_sem, z_mor)||^2.
* ``z_mor`` (regional morphology): the bottleneck feature map of a frozen
  segmentation network (:class:`~cinerecon.models.unet.UNet`,
  :func:`morphology_latent`) for the same slice. A 1x1 convolution projects it to
  the denoiser's channels at the encoder level of matching resolution (level
  log2(``mor_downsample``), or the deepest level if the U-Net is shallower; the
  projection is resized bilinearly when the sizes differ) and it is *added* to the
  feature map entering that level. The projection starts at zero, so an untrained
  DMCVR model equals the same model without morphology, and ``mor_channels=0`` is
  the paper's "DiffAE" ablation: the same network minus this one conditioning path.
* ``x_T`` (stochastic code): deterministic DDIM inversion (eta = 0) of x0
  conditioned on (z_sem, z_mor); DDIM decoding of (x_T, z_sem, z_mor) reproduces x0.

Denoiser: ADM/DiffAE U-Net, eps-prediction, sinusoidal timestep embedding + MLP,
residual blocks with adaptive group norm
``h = GroupNorm(h); h = (1 + scale_t) * h + shift_t; h = h * (1 + W z_sem)``,
self-attention at configured resolutions. Linear betas 1e-4..0.02 over T = 1000.

DDIM conventions (:func:`ddim_timesteps`, :func:`ddim_invert`, :func:`ddim_sample`):
``steps`` timesteps tau_1 < ... < tau_K = T - 1 evenly spaced ("trailing"), plus a
clean level with alpha_bar = 1. Decoding level k -> k-1 evaluates eps at
(x_{tau_k}, tau_k); inversion level k-1 -> k evaluates eps at (x_{tau_{k-1}}, tau_k),
the target timestep (Mokady et al.'s DDIM inversion; the paper's eq. 3 writes the
current t, which differs by one sub-step). With this choice an eps-model that does
not depend on x inverts exactly, so the only round-trip error is the model's
change between x_{tau_{k-1}} and x_{tau_k}; that error shrinks with more steps or
with ``refine`` fixed-point iterations per inversion step (off by default, as in
the paper). :class:`DiffAE` clips every step's pred_x0 to [-1, 1] and re-derives eps from
it (``clip``, DiffAE's ``clip_denoised``; the functions below default to the plain
arithmetic, ``clip=False``): an interpolated x_T is the inversion of no image, and an
imperfect model decodes it unclipped to saturated noise. Inversion and decoding must use
the same ``clip``.
Interpolation (:func:`interpolate_latents`): lerp for z_sem and z_mor, slerp for x_T.

Image sizes: H and W must be divisible by ``config.multiple`` (2 ** (levels - 1)):
4 for :meth:`DiffusionConfig.tiny` (96 x 96 crops: levels 96, 48, 24) and 32 for
:meth:`DiffusionConfig.paper` (256 x 256). Other sizes: pad with
:func:`~cinerecon.models.unet.pad_to_multiple` first and crop the decoded slices
back. Attention levels are fixed from ``image_size`` at construction; the network
is convolutional and runs on any divisible size.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import PlainConfig
from .checkpoints import load_model, save_weights
from .resume import TrainingState, restore, snapshot
from .slice_store import BatchPlan, batches
from .runtime import Precision, seeded
from .train_seg import _logger
from .model_grid import resample_fov  # noqa: F401  (re-exported)
from .unet import pad_to_multiple
from ..latent.interpolate import lerp, slerp  # noqa: F401  (re-exported: the DMCVR interpolation)

CHECKPOINT_FORMAT = "cinerecon.diffae/1"

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class DiffusionConfig(PlainConfig):
    """Architecture, noise schedule and EMA decay of a :class:`DiffAE`; plain types only.

    ``width`` is the channel count of the first level, ``channel_mult`` the per-level
    multipliers (each level after the first halves the size), ``attention_resolutions``
    the feature-map sizes (pixels, relative to ``image_size``) that get self-attention
    (the middle block always has one). ``enc_channel_mult`` is the semantic encoder's
    (None: the denoiser's). ``mor_channels`` is the channel count of z_mor (0: no
    morphology, the DiffAE ablation) and ``mor_downsample`` its size factor relative to
    ``image_size`` (a power of 2; z_mor is resized to the injection level's grid).
    ``seg_input_size`` is the square size at which the segmentation network sees a slice
    to give z_mor: 0, the denoiser's ``image_size``; otherwise the slice is resampled to it
    with the same field of view (:func:`resample_fov`), so that a network trained on the
    crops sees their pixel scale while the denoiser works on a finer grid (DMCVR's 256 px).
    """

    image_size: int = 96
    in_channels: int = 1
    width: int = 16
    channel_mult: tuple = (1, 2, 2)
    num_res_blocks: int = 1
    attention_resolutions: tuple = (24,)
    num_heads: int = 1
    dropout: float = 0.0
    norm_groups: int = 8
    z_sem_dim: int = 64
    enc_channel_mult: tuple | None = None
    mor_channels: int = 64
    mor_downsample: int = 8
    seg_input_size: int = 0
    num_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    ema_decay: float = 0.999

    def __post_init__(self):
        for name in ("channel_mult", "attention_resolutions", "enc_channel_mult"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(int(v) for v in value))
        if (self.in_channels < 1 or self.width < 1 or self.num_res_blocks < 1 or self.z_sem_dim < 1
                or self.num_heads < 1 or self.norm_groups < 1 or self.mor_channels < 0
                or not self.channel_mult or min(self.channel_mult) < 1
                or (self.enc_channel_mult is not None
                    and (not self.enc_channel_mult or min(self.enc_channel_mult) < 1))):
            raise ValueError(f"invalid DiffusionConfig {self}")
        if self.image_size < 1 or self.image_size % self.multiple:
            raise ValueError(f"image_size {self.image_size} must be divisible by 2**(levels-1) = {self.multiple}")
        if self.mor_downsample < 1 or self.mor_downsample & (self.mor_downsample - 1):
            raise ValueError(f"mor_downsample must be a power of 2, got {self.mor_downsample}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not (0 < self.beta_start < self.beta_end < 1) or self.num_timesteps < 2:
            raise ValueError("need 0 < beta_start < beta_end < 1 and num_timesteps >= 2")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        for c in {self.width * m for m in self.channel_mult + (self.enc_channel_mult or ())}:
            if c % self.num_heads:
                raise ValueError(f"{c} channels do not split into {self.num_heads} attention heads")

    @classmethod
    def tiny(cls, **overrides) -> "DiffusionConfig":
        """CPU demo at the 96 x 96 SAX crop: width 16, mults (1, 2, 2), 1 res block, attention
        at the lowest resolution (image_size / 4), z_sem 64-d, z_mor from ``UNetConfig.tiny()``
        (64 channels at 1/8), ~0.3M + 0.1M parameters. ``tiny(mor_channels=0)`` is the DiffAE ablation."""
        size = overrides.get("image_size", 96)
        mult = tuple(overrides.get("channel_mult", (1, 2, 2)))
        base = dict(image_size=size, width=16, channel_mult=mult, num_res_blocks=1,
                    attention_resolutions=(size // 2 ** (len(mult) - 1),), num_heads=1, dropout=0.0,
                    norm_groups=8, z_sem_dim=64, mor_channels=64, mor_downsample=8, ema_decay=0.999)
        return cls(**{**base, **overrides})

    @classmethod
    def paper(cls, **overrides) -> "DiffusionConfig":
        """The published 256 x 256 DiffAE/DMCVR configuration: width 128, mults
        (1, 1, 2, 2, 4, 4), 2 res blocks, attention at 16 x 16, dropout 0.1, z_sem 512-d
        from an encoder with mults (1, 1, 2, 2, 4, 4, 4), EMA 0.9999; z_mor from
        ``UNetConfig.paper()`` (1024 channels at 1/16 = the 16 x 16 level)."""
        base = dict(image_size=256, width=128, channel_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2,
                    attention_resolutions=(16,), num_heads=1, dropout=0.1, norm_groups=32, z_sem_dim=512,
                    enc_channel_mult=(1, 1, 2, 2, 4, 4, 4), mor_channels=1024, mor_downsample=16,
                    ema_decay=0.9999)
        return cls(**{**base, **overrides})

    @property
    def multiple(self) -> int:
        """H and W must be divisible by this."""
        return 2 ** (len(self.channel_mult) - 1)

    @property
    def embed_dim(self) -> int:
        """Width of the timestep embedding (4 x width, as ADM/DiffAE)."""
        return 4 * self.width

    @property
    def morphology(self) -> bool:
        """True for DMCVR (conditioned on z_mor), False for the DiffAE ablation."""
        return self.mor_channels > 0

    @property
    def mor_level(self) -> int:
        """Denoiser encoder level at which z_mor is injected (the one of matching resolution)."""
        return min(int(math.log2(self.mor_downsample)), len(self.channel_mult) - 1)

    def attention_levels(self, mult: tuple | None = None) -> set[int]:
        mult = self.channel_mult if mult is None else mult
        return {i for i in range(len(mult)) if self.image_size // 2 ** i in self.attention_resolutions}



# --------------------------------------------------------------------------- schedule + DDIM
def linear_alphas_cumprod(num_timesteps: int = 1000, beta_start: float = 1e-4,
                          beta_end: float = 0.02) -> torch.Tensor:
    """alpha_bar_t = prod_{s<=t} (1 - beta_s) for linearly spaced betas (Ho et al. 2020), float64 (T,)."""
    betas = torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


def ddim_timesteps(steps: int, num_timesteps: int = 1000) -> list[int]:
    """``steps`` increasing timesteps ending at T - 1, evenly spaced ("trailing"):
    steps=20, T=1000 -> 49, 99, ..., 999; steps=T -> 0, 1, ..., T - 1."""
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be in [1, {num_timesteps}], got {steps}")
    return [int(round((k + 1) * num_timesteps / steps)) - 1 for k in range(steps)]


def predict_x0(x_t: torch.Tensor, eps: torch.Tensor, a_t: float) -> torch.Tensor:
    """Tweedie / DDIM denoised estimate: (x_t - sqrt(1 - a_t) eps) / sqrt(a_t), a_t = alpha_bar_t."""
    return (x_t - math.sqrt(1.0 - a_t) * eps) / math.sqrt(a_t)


def ddim_step(x_t: torch.Tensor, eps: torch.Tensor, a_t: float, a_next: float, clip: bool = False) -> torch.Tensor:
    """Deterministic (eta = 0) DDIM move from noise level a_t to a_next, either direction:
    sqrt(a_next) * pred_x0 + sqrt(1 - a_next) * eps.

    ``clip`` clamps pred_x0 to the data range [-1, 1] and re-derives eps from it, as DDIM
    implementations do by default (guided-diffusion's and DiffAE's ``clip_denoised``): where
    the model is unsure, near pure noise (sqrt(a_t) ~ 0.006 at t = T - 1), an eps error is
    amplified ~160x in pred_x0, and unclipped it turns a decoded slice into saturated noise.
    A pred_x0 already inside the range is unchanged, so is the step. At a_t = 1 (the clean
    image) there is nothing to clip."""
    x0 = predict_x0(x_t, eps, a_t)
    if clip and a_t < 1.0:
        x0 = x0.clamp(-1.0, 1.0)
        eps = (x_t - math.sqrt(a_t) * x0) / math.sqrt(1.0 - a_t)
    return math.sqrt(a_next) * x0 + math.sqrt(1.0 - a_next) * eps


def _t(t: int, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)


def ddim_invert(eps_fn: EpsFn, x0: torch.Tensor, alphas_cumprod: torch.Tensor, steps: int,
                refine: int = 0, clip: bool = False) -> torch.Tensor:
    """x_T from x0 by DDIM inversion: for tau_1 < ... < tau_K, x <- ddim_step(x, eps_fn(x, tau_k),
    a_prev, a_{tau_k}) starting from a_prev = 1 (the clean image). ``eps_fn(x, t)`` gets the batch
    and a (N,) long tensor of timesteps; the arithmetic keeps x's dtype.

    ``refine`` > 0 adds that many fixed-point iterations per step, y <- ddim_step(x, eps_fn(y, tau_k),
    a_prev, a_{tau_k}), which solve for the y that the decoding step maps back to x (Pan et al. 2023,
    "accelerated iterative diffusion inversion"): (1 + refine) model calls per step for a much
    smaller round-trip error at few steps. 0 is plain DDIM inversion, as in DMCVR/DiffAE.
    ``clip``: see :func:`ddim_step`.
    """
    ac = alphas_cumprod
    x, a_prev = x0, 1.0
    for t in ddim_timesteps(steps, len(ac)):
        a_t, tt = float(ac[t]), _t(t, x)
        y = ddim_step(x, eps_fn(x, tt), a_prev, a_t, clip)
        for _ in range(refine):
            y = ddim_step(x, eps_fn(y, tt), a_prev, a_t, clip)
        x, a_prev = y, a_t
    return x


def ddim_sample(eps_fn: EpsFn, x_T: torch.Tensor, alphas_cumprod: torch.Tensor, steps: int,
                clip: bool = False) -> torch.Tensor:
    """x0 from x_T by DDIM sampling: for tau_K > ... > tau_1, x <- ddim_step(x, eps_fn(x, tau_k),
    a_{tau_k}, a_{tau_{k-1}}), the last step going to a = 1 (x <- pred_x0). Exact inverse of
    :func:`ddim_invert` (with the same ``clip``) when eps_fn does not depend on x and x0 lies
    in [-1, 1]: a clipped step moves pred_x0 further out on the same side on the way back."""
    ac = alphas_cumprod
    ts = ddim_timesteps(steps, len(ac))
    x = x_T
    for k in reversed(range(len(ts))):
        a_next = float(ac[ts[k - 1]]) if k > 0 else 1.0
        x = ddim_step(x, eps_fn(x, _t(ts[k], x)), float(ac[ts[k]]), a_next, clip)
    return x


# --------------------------------------------------------------------------- interpolation
def interpolate_latents(a: tuple, b: tuple, t) -> tuple:
    """DMCVR's interpolation between the codes (z_sem, z_mor, x_T) of two slices (batched, or
    (N,) weights ``t``): lerp for z_sem and z_mor (eq. 5), slerp for the Gaussian x_T. z_mor may
    be None on both sides (DiffAE)."""
    (sa, ma, xa), (sb, mb, xb) = a, b
    if (ma is None) != (mb is None):
        raise ValueError("z_mor must be given on both sides or on neither")
    return lerp(sa, sb, t), None if ma is None else lerp(ma, mb, t), slerp(xa, xb, t)


# --------------------------------------------------------------------------- building blocks
def _groups(channels: int, max_groups: int) -> int:
    return max(g for g in range(1, min(channels, max_groups) + 1) if channels % g == 0)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (N, dim) of (N,) timesteps: [cos(t f_i), sin(t f_i)], f_i = max_period^(-i/half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class ResBlock(nn.Module):
    """GN-SiLU-conv, AdaGN, SiLU-dropout-conv (zero-initialised), plus a (1x1) skip.

    AdaGN: ``h = GN(h); h = (1 + scale_t) * h + shift_t; h = h * (1 + W z_sem)`` where the
    time and z_sem terms exist only if ``emb_dim`` / ``cond_dim`` are given (the semantic
    encoder's blocks have neither).
    """

    def __init__(self, c_in: int, c_out: int, groups: int, dropout: float = 0.0,
                 emb_dim: int | None = None, cond_dim: int | None = None):
        super().__init__()
        self.in_norm = nn.GroupNorm(_groups(c_in, groups), c_in)
        self.in_conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * c_out)) if emb_dim else None
        self.cond = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, c_out)) if cond_dim else None
        self.out_norm = nn.GroupNorm(_groups(c_out, groups), c_out)
        self.dropout = nn.Dropout(dropout)
        self.out_conv = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x, emb=None, cond=None):
        h = self.in_conv(F.silu(self.in_norm(x)))
        h = self.out_norm(h)
        if self.emb is not None:
            scale, shift = self.emb(emb)[..., None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        if self.cond is not None:
            h = h * (1 + self.cond(cond)[..., None, None])
        h = self.out_conv(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the H*W positions, residual, output projection zero-initialised."""

    def __init__(self, channels: int, groups: int, heads: int = 1):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(_groups(channels, groups), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class _NoAttention(nn.Identity):
    """Stands where a level has no self-attention (a named Identity, clearer in model prints)."""


class _Down(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class _Up(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


def _level(res: list, attn: list, **extra) -> nn.ModuleDict:
    return nn.ModuleDict({"res": nn.ModuleList(res), "attn": nn.ModuleList(attn), **extra})


# --------------------------------------------------------------------------- networks
class Denoiser(nn.Module):
    """eps_theta(x_t, t, z_sem, z_mor): the conditional U-Net (ADM/DiffAE layout).

    Skip connections: the input conv, every encoder res block and every downsample push
    a feature map; each decoder level has ``num_res_blocks + 1`` blocks that pop one each.
    z_mor (if configured) is projected by ``mor_proj`` (1x1 conv, zero-initialised) and
    added to the feature map entering encoder level ``config.mor_level``.
    """

    def __init__(self, config: DiffusionConfig):
        super().__init__()
        self.config = c = config
        w, E, Z, G = c.width, c.embed_dim, c.z_sem_dim, c.norm_groups
        attn_levels = c.attention_levels()
        self.time_mlp = nn.Sequential(nn.Linear(w, E), nn.SiLU(), nn.Linear(E, E))
        ch = w * c.channel_mult[0]
        self.input_conv = nn.Conv2d(c.in_channels, ch, 3, padding=1)
        skips, mor_ch = [ch], ch
        self.down = nn.ModuleList()
        for i, m in enumerate(c.channel_mult):
            res, attn = [], []
            for _ in range(c.num_res_blocks):
                res.append(ResBlock(ch, w * m, G, c.dropout, E, Z))
                ch = w * m
                attn.append(Attention(ch, G, c.num_heads) if i in attn_levels else _NoAttention())
                skips.append(ch)
            extra = {}
            if i < len(c.channel_mult) - 1:
                extra["downsample"] = _Down(ch)
                skips.append(ch)
                if i + 1 == c.mor_level:
                    mor_ch = ch
            self.down.append(_level(res, attn, **extra))
        self.mid = nn.ModuleList([ResBlock(ch, ch, G, c.dropout, E, Z), Attention(ch, G, c.num_heads),
                                  ResBlock(ch, ch, G, c.dropout, E, Z)])
        self.up = nn.ModuleList()
        for i, m in reversed(list(enumerate(c.channel_mult))):
            res, attn = [], []
            for _ in range(c.num_res_blocks + 1):
                res.append(ResBlock(ch + skips.pop(), w * m, G, c.dropout, E, Z))
                ch = w * m
                attn.append(Attention(ch, G, c.num_heads) if i in attn_levels else _NoAttention())
            self.up.append(_level(res, attn, **({"upsample": _Up(ch)} if i > 0 else {})))
        self.out = nn.Sequential(nn.GroupNorm(_groups(ch, G), ch), nn.SiLU(),
                                 _zero(nn.Conv2d(ch, c.in_channels, 3, padding=1)))
        self.mor_proj = _zero(nn.Conv2d(c.mor_channels, mor_ch, 1)) if c.morphology else None

    def _check(self, x, t, z_sem, z_mor):
        c = self.config
        if x.ndim != 4 or x.shape[1] != c.in_channels:
            raise ValueError(f"expected x (B, {c.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[-2] % c.multiple or x.shape[-1] % c.multiple:
            raise ValueError(f"H, W = {tuple(x.shape[-2:])} must be divisible by {c.multiple}; "
                             "pad with cinerecon.models.unet.pad_to_multiple")
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must be ({x.shape[0]},), got {tuple(t.shape)}")
        if z_sem.shape != (x.shape[0], c.z_sem_dim):
            raise ValueError(f"z_sem must be ({x.shape[0]}, {c.z_sem_dim}), got {tuple(z_sem.shape)}")
        if c.morphology:
            if z_mor is None:
                raise ValueError("this model is conditioned on morphology: z_mor is required")
            if z_mor.ndim != 4 or z_mor.shape[:2] != (x.shape[0], c.mor_channels):
                raise ValueError(f"z_mor must be ({x.shape[0]}, {c.mor_channels}, h, w), got {tuple(z_mor.shape)}")
        elif z_mor is not None:
            raise ValueError("this model has no morphology path (mor_channels=0): pass z_mor=None")

    def _inject(self, h, z_mor):
        m = self.mor_proj(z_mor.to(h.dtype))
        if m.shape[-2:] != h.shape[-2:]:
            m = F.interpolate(m, size=h.shape[-2:], mode="bilinear", align_corners=False)
        return h + m

    def forward(self, x: torch.Tensor, t: torch.Tensor, z_sem: torch.Tensor,
                z_mor: torch.Tensor | None = None) -> torch.Tensor:
        self._check(x, t, z_sem, z_mor)
        emb = self.time_mlp(timestep_embedding(t, self.config.width))
        level = self.config.mor_level if z_mor is not None else -1
        h = self.input_conv(x)
        if level == 0:
            h = self._inject(h, z_mor)
        hs = [h]
        for i, blocks in enumerate(self.down):
            for res, attn in zip(blocks["res"], blocks["attn"]):
                h = attn(res(h, emb, z_sem))
                hs.append(h)
            if "downsample" in blocks:
                h = blocks["downsample"](h)
                if i + 1 == level:
                    h = self._inject(h, z_mor)
                hs.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb, z_sem)), emb, z_sem)
        for blocks in self.up:
            for res, attn in zip(blocks["res"], blocks["attn"]):
                h = attn(res(torch.cat([h, hs.pop()], dim=1), emb, z_sem))
            if "upsample" in blocks:
                h = blocks["upsample"](h)
        return self.out(h)


class SemanticEncoder(nn.Module):
    """E_sem: the denoiser's encoder half (no time or z conditioning), middle block,
    GN-SiLU, global average pooling and a linear layer -> z_sem (B, z_sem_dim)."""

    def __init__(self, config: DiffusionConfig):
        super().__init__()
        c = config
        mult = c.enc_channel_mult or c.channel_mult
        w, G = c.width, c.norm_groups
        attn_levels = c.attention_levels(mult)
        ch = w * mult[0]
        self.input_conv = nn.Conv2d(c.in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        for i, m in enumerate(mult):
            res, attn = [], []
            for _ in range(c.num_res_blocks):
                res.append(ResBlock(ch, w * m, G, c.dropout))
                ch = w * m
                attn.append(Attention(ch, G, c.num_heads) if i in attn_levels else _NoAttention())
            extra = {"downsample": _Down(ch)} if i < len(mult) - 1 else {}
            self.down.append(_level(res, attn, **extra))
        self.mid = nn.ModuleList([ResBlock(ch, ch, G, c.dropout), Attention(ch, G, c.num_heads),
                                  ResBlock(ch, ch, G, c.dropout)])
        self.head = nn.Sequential(nn.GroupNorm(_groups(ch, G), ch), nn.SiLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten(), nn.Linear(ch, c.z_sem_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.input_conv(x)
        for blocks in self.down:
            for res, attn in zip(blocks["res"], blocks["attn"]):
                h = attn(res(h))
            if "downsample" in blocks:
                h = blocks["downsample"](h)
        h = self.mid[2](self.mid[1](self.mid[0](h)))
        return self.head(h)


@torch.no_grad()
def morphology_latent(seg_model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """z_mor: the segmentation network's bottleneck features for slices x (B, C, H, W).

    Uses ``seg_model.bottleneck`` (:meth:`cinerecon.models.unet.UNet.bottleneck`) in eval
    mode without gradients (the caller's train/eval mode is restored); x is first
    replicate-padded to ``seg_model.config.multiple`` if the model has one. The result
    is on x's device.
    """
    if not hasattr(seg_model, "bottleneck"):
        raise TypeError("the segmentation model needs a bottleneck(x) method (cinerecon.models.UNet)")
    config = getattr(seg_model, "config", None)
    multiple = getattr(config, "multiple", 1)
    seg_device = next(seg_model.parameters()).device
    was_training = seg_model.training
    seg_model.eval()
    try:
        xp, _ = pad_to_multiple(x.to(seg_device), multiple)
        return seg_model.bottleneck(xp).to(x.device)
    finally:
        seg_model.train(was_training)


class DiffAE(nn.Module):
    """The trained DMCVR / DiffAE model: ``denoiser`` (eps_theta) + ``encoder`` (E_sem).

    A frozen segmentation network can be attached (:meth:`attach_seg`) to compute z_mor
    with :meth:`morphology`; it is not a submodule, so it is neither in ``state_dict()``
    nor moved by ``.to()`` (it has its own checkpoint and device).
    """

    def __init__(self, config: DiffusionConfig | None = None, seg_model: nn.Module | None = None):
        super().__init__()
        self.config = config = config or DiffusionConfig.tiny()
        self.denoiser = Denoiser(config)
        self.encoder = SemanticEncoder(config)
        self.alphas_cumprod = linear_alphas_cumprod(config.num_timesteps, config.beta_start, config.beta_end)
        self.__dict__["_seg_model"] = None
        if seg_model is not None:
            self.attach_seg(seg_model)

    # -- latents ------------------------------------------------------------------
    @property
    def seg_model(self) -> nn.Module | None:
        return self.__dict__["_seg_model"]

    def attach_seg(self, seg_model: nn.Module | None) -> "DiffAE":
        """Attach (or with None detach) the segmentation network that gives z_mor. It stays frozen
        without being modified: :func:`morphology_latent` runs it in eval mode under no_grad."""
        if seg_model is not None:
            if not self.config.morphology:
                raise ValueError("this DiffAE has no morphology path (mor_channels=0); do not attach a seg model")
            if not hasattr(seg_model, "bottleneck"):
                raise TypeError("the segmentation model needs a bottleneck(x) method (cinerecon.models.UNet)")
        self.__dict__["_seg_model"] = seg_model
        return self

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, z_sem: torch.Tensor,
                z_mor: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted noise eps_theta(x_t, t, z_sem, z_mor)."""
        return self.denoiser(x_t, t, z_sem, z_mor)

    def encode_sem(self, x0: torch.Tensor) -> torch.Tensor:
        """z_sem (N, z_sem_dim) of clean slices x0 (N, C, H, W)."""
        return self.encoder(x0)

    def morphology(self, x: torch.Tensor) -> torch.Tensor:
        """z_mor of slices x from the attached segmentation network (see :func:`morphology_latent`)."""
        if self.seg_model is None:
            raise RuntimeError("no segmentation model attached: call attach_seg(seg_model) first")
        if self.config.seg_input_size:
            x = resample_fov(x, self.config.seg_input_size)
        z = morphology_latent(self.seg_model, x)
        if z.shape[1] != self.config.mor_channels:
            raise ValueError(f"segmentation bottleneck has {z.shape[1]} channels, "
                             f"config.mor_channels = {self.config.mor_channels}")
        return z

    # -- DDIM ---------------------------------------------------------------------
    def _ddim(self, fn, x, z_sem, z_mor, steps, batch_size, **kwargs):
        if z_mor is None and self.config.morphology:
            raise ValueError("this model is conditioned on morphology: z_mor is required")
        n = x.shape[0]
        batch_size = batch_size or n
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                out = []
                for i in range(0, n, batch_size):
                    zs = z_sem[i:i + batch_size]
                    zm = None if z_mor is None else z_mor[i:i + batch_size]
                    out.append(fn(lambda xt, t, zs=zs, zm=zm: self.denoiser(xt, t, zs, zm),
                                  x[i:i + batch_size], self.alphas_cumprod, steps, **kwargs))
                return torch.cat(out) if out else x.clone()
        finally:
            self.train(was_training)

    def invert(self, x0: torch.Tensor, z_sem: torch.Tensor, z_mor: torch.Tensor | None = None,
               steps: int = 50, batch_size: int | None = None, refine: int = 0, clip: bool = True) -> torch.Tensor:
        """Stochastic code x_T (N, C, H, W) of clean slices x0 by deterministic DDIM inversion
        conditioned on (z_sem, z_mor); ``batch_size`` slices at a time (None: all N);
        ``refine`` fixed-point iterations per step (see :func:`ddim_invert`); ``clip`` pred_x0
        to [-1, 1] at every step (see :func:`ddim_step`; DiffAE's default)."""
        return self._ddim(ddim_invert, x0, z_sem, z_mor, steps, batch_size, refine=refine, clip=clip)

    def decode(self, x_T: torch.Tensor, z_sem: torch.Tensor, z_mor: torch.Tensor | None = None,
               steps: int = 50, batch_size: int | None = None, clip: bool = True) -> torch.Tensor:
        """Slices x0 (N, C, H, W) from (x_T, z_sem, z_mor) by deterministic DDIM sampling
        (``clip`` as in :meth:`invert`)."""
        return self._ddim(ddim_sample, x_T, z_sem, z_mor, steps, batch_size, clip=clip)

    def encode(self, x0: torch.Tensor, steps: int = 50, batch_size: int | None = None, refine: int = 0,
               seg_x: torch.Tensor | None = None, clip: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """All three codes (z_sem, z_mor or None, x_T) of clean slices x0; z_mor from ``seg_x``
        (the same slices as the segmentation network was trained on them, e.g. the crops of a
        model that works on a resampled grid) when given, else from x0; ``clip`` as in :meth:`invert`."""
        seg_x = x0 if seg_x is None else seg_x
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                n = x0.shape[0]
                bs = batch_size or max(n, 1)
                z_sem = torch.cat([self.encode_sem(x0[i:i + bs]) for i in range(0, n, bs)])
                z_mor = (torch.cat([self.morphology(seg_x[i:i + bs].to(x0.device)) for i in range(0, n, bs)])
                         if self.config.morphology else None)
        finally:
            self.train(was_training)
        return z_sem, z_mor, self.invert(x0, z_sem, z_mor, steps, batch_size, refine, clip)


# --------------------------------------------------------------------------- EMA
class EMA:
    """Exponential moving average of a model's floating-point state (parameters and buffers).

    ``update(model)`` after each optimiser step: shadow <- d * shadow + (1 - d) * current with
    d = min(decay, (1 + n) / (10 + n)) when ``warmup`` (n = updates so far), so that short runs
    are not dominated by the random initialisation; integer buffers are copied.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmup: bool = True):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay, self.warmup, self.num_updates = decay, warmup, 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def current_decay(self) -> float:
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if s.is_floating_point():
                s.lerp_(v.detach().to(s.dtype), 1.0 - d)
            else:
                s.copy_(v)
        self.num_updates += 1

    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model`` (same architecture)."""
        model.load_state_dict(self.shadow)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates,
                "shadow": {k: v.clone() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.warmup, self.num_updates = state["decay"], state["warmup"], state["num_updates"]
        # onto the devices of the current shadow (a saved training state is loaded on the CPU)
        self.shadow = {k: v.to(self.shadow[k].device if k in self.shadow else v.device).clone()
                       for k, v in state["shadow"].items()}


# --------------------------------------------------------------------------- training
def _as_images(images, name: str):
    """(N, C, H, W) images: a float32 numpy array, or a SliceStore as it is (read batch by batch)."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    x = images if hasattr(images, "shape") and not isinstance(images, np.ndarray) \
        else np.asarray(images, dtype=np.float32)
    if len(x.shape) != 4:
        raise ValueError(f"expected {name} (N, C, H, W), got {tuple(x.shape)}")
    return x


def train_diffae(images, config: DiffusionConfig, steps: int = 1000, batch_size: int = 16, lr: float = 1e-4,
                 seed: int = 0, device="cpu", log=None, seg_model: nn.Module | None = None, seg_images=None,
                 log_every: int = 50, grad_clip: float = 1.0, state: TrainingState | None = None,
                 workers: int = 0, precision: str = "fp32", deterministic: bool = True,
                 to_model: Callable | None = None) -> tuple[DiffAE, list[dict]]:
    """Train denoiser + semantic encoder end to end on ||eps - eps_theta(x_t, t, E_sem(x0), z_mor)||^2.

    ``images`` (N, C, H, W) in [-1, 1], H, W divisible by ``config.multiple``: an array or a
    SliceStore, read batch by batch (by ``workers`` DataLoader processes). Each step reads a
    batch (every epoch a fresh permutation seeded by (seed, epoch), its last partial batch
    dropped), draws t ~ U{0..T-1} and eps ~ N(0, I) from a generator seeded with ``seed``
    (so the run does not depend on the device's RNG), takes one Adam step (gradient norm
    clipped to ``grad_clip``) and updates the EMA. With a morphology config, ``seg_model``
    (frozen, e.g. a trained U-Net; moved to ``device``) gives z_mor from ``seg_images``
    (default: ``images``, same N) batch by batch. ``state`` saves the run when due (model,
    optimiser, EMA, generators, grad scaler, history) and resumes a killed one to the same
    weights. ``precision`` (fp32 | bf16 | fp16, the loss in float32) and ``deterministic``
    as in :mod:`cinerecon.models.runtime`. ``to_model`` maps each batch of ``images`` (on the
    device) onto the model's grid (e.g. crops resampled to 256 px); the segmentation network
    then sees the batch as stored (the crops it was trained on), unless ``seg_images`` is given.
    Returns the EMA model in eval mode (seg model attached) and a history row every
    ``log_every`` steps and at the end: step, loss (mean over the interval), ema_decay,
    seconds (since start).
    """
    device = torch.device(device)
    emit = _logger(log)
    x_all = _as_images(images, "images")
    n = x_all.shape[0]
    if n == 0 or steps < 1 or batch_size < 1:
        raise ValueError("need at least one image, steps >= 1 and batch_size >= 1")
    if x_all.shape[1] != config.in_channels:
        raise ValueError(f"images have {x_all.shape[1]} channels, config.in_channels = {config.in_channels}")
    to_model = to_model or (lambda x: x)
    model_shape = tuple(to_model(torch.zeros((1,) + tuple(x_all.shape[1:]))).shape[-2:])
    if model_shape[0] % config.multiple or model_shape[1] % config.multiple:
        raise ValueError(f"H, W = {model_shape} must be divisible by {config.multiple}")
    if config.morphology and seg_model is None:
        raise ValueError("config.mor_channels > 0 (DMCVR) needs seg_model; use mor_channels=0 for DiffAE")
    if not config.morphology and (seg_model is not None or seg_images is not None):
        raise ValueError("config.mor_channels = 0 (DiffAE): pass no seg_model / seg_images")
    seg_all = None if seg_images is None else _as_images(seg_images, "seg_images")
    if seg_all is not None and seg_all.shape[0] != n:
        raise ValueError(f"seg_images has {seg_all.shape[0]} slices, images {n}")
    if seg_model is not None:
        seg_model.to(device)
    sources = (x_all,) if seg_all is None else (x_all, seg_all)

    history: list[dict] = []
    amp = Precision(precision, device)
    with seeded(seed, device, deterministic):
        model = DiffAE(config).to(device)
        if seg_model is not None:
            model.attach_seg(seg_model)
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        optimizers = {"opt": opt, **amp.state()}
        ema = EMA(model, config.ema_decay)
        gen = torch.Generator().manual_seed(seed)
        ab = model.alphas_cumprod.to(device=device, dtype=torch.float32)
        plan = BatchPlan(n, batch_size, seed, drop_last=True)
        start, running, count = 0, 0.0, 0
        saved = state.load() if state is not None else None
        if saved is not None:
            extra = restore(saved, {"model": model, "ema": ema}, optimizers, {"noise": gen})
            start, history, running, count = saved["step"], extra["history"], extra["running"], extra["count"]
        t0 = time.perf_counter()
        for step, batch in enumerate(batches(sources, plan, start, steps, workers), start=start + 1):
            stored = batch[0].to(torch.float32)
            if stored.abs().max() > 1.0 + 1e-3:
                raise ValueError("images must be in the model range [-1, 1]")
            x0 = to_model(stored.to(device))
            t = torch.randint(config.num_timesteps, (len(x0),), generator=gen)
            noise = torch.randn(tuple(x0.shape), generator=gen)
            t, noise = t.to(device), noise.to(device)
            a = ab[t].view(-1, 1, 1, 1)
            x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
            with amp.autocast():
                z_mor = model.morphology(batch[-1].to(device, torch.float32)) if seg_model is not None else None
                eps = model(x_t, t, model.encode_sem(x0), z_mor)
            loss = F.mse_loss(eps.float(), noise)
            opt.zero_grad(set_to_none=True)
            amp.step(loss, opt, grad_clip, model.parameters())
            ema.update(model)
            running, count = running + loss.item(), count + 1
            if step % log_every == 0 or step == steps:
                row = {"step": step, "loss": running / count, "ema_decay": ema.current_decay(),
                       "seconds": time.perf_counter() - t0}
                history.append(row)
                emit(f"step {step}/{steps} loss {row['loss']:.4f} ({row['seconds']:.1f} s)")
                running, count = 0.0, 0
            if state is not None:
                state.maybe_save(step, lambda: snapshot(step, {"model": model, "ema": ema}, optimizers,
                                                        {"noise": gen}, history=history, running=running,
                                                        count=count))
        ema.copy_to(model)
    model.eval()
    return model, history


# --------------------------------------------------------------------------- checkpoints
def save_diffae(model: DiffAE, path) -> None:
    """Write {"format", "state_dict", "config"} atomically, loadable with
    ``torch.load(weights_only=True)``. The segmentation network is not included."""
    save_weights(model, model.config.to_dict(), CHECKPOINT_FORMAT, path)


def load_diffae(path, device="cpu", seg_model: nn.Module | None = None) -> DiffAE:
    """The :class:`DiffAE` of a :func:`save_diffae` file, in eval mode on ``device``, with
    ``seg_model`` (the separately checkpointed segmentation network) attached if given."""
    model = load_model(path, CHECKPOINT_FORMAT, "DiffAE", lambda c: DiffAE(DiffusionConfig.from_dict(c)), device)
    if seg_model is not None:
        model.attach_seg(seg_model)
    return model
