"""W+ encoder E for a StyleGAN2 generator (pSp, Richardson et al. CVPR 2021), and perceptual distances.

E is DeepRecon's latent-code encoder: ``E(x)`` is the W+ code (N, num_ws, w_dim)
of images x (N, 1, H, W) in [-1, 1], the starting point of the hybrid inversion
and the E of its domain term ||w - E(G(w))||^2.

Architecture (pSp's GradualStyleEncoder, scaled down by the config): a residual
backbone of four stride-2 stages (H/2 ... H/16); a feature pyramid on the last
three (fine H/4, medium H/8, coarse H/16: top-down, bilinear up-sampling plus
1x1 lateral convolutions); one "map2style" head per style vector (stride-2
convolutions down to 1x1, then a linear layer): the first ``coarse_ws`` styles
from the coarse map, the next ``medium_ws`` from the medium one, the rest from the
fine one (for a 96 x 96 generator with 10 styles: 3 + 4 + 3; a 1024 one: 3 + 4 + 11
as pSp). The heads predict an offset from the generator's mean latent:
``E(x) = w_avg + E.delta(x)``, with ``w_avg`` stored in the encoder.
GroupNorm rather than BatchNorm: E behaves the same on one image (inversion)
as on a training batch.

Perceptual distances need no downloaded weights: :class:`FeatureDistance` is
LPIPS without the learned linear layer (channel-unit-normalised features,
squared difference summed over channels, averaged over pixels, summed over
layers) on any feature extractor: the pipeline's own segmentation U-Net encoder
(:func:`unet_features`) or a trained StyleGAN2 discriminator
(:func:`cinerecon.models.stylegan2.discriminator_features`). Anything with the
:class:`PerceptualDistance` signature, e.g. an ``lpips.LPIPS`` module when
weights are available, can be passed instead.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import PlainConfig
from .checkpoints import load_model, save_weights
from .resume import TrainingState, restore, snapshot
from .slice_store import BatchPlan, batches
from .runtime import IntervalMeans, Precision, seeded
from .stylegan2 import Generator, StyleGAN2Config, as_training_images
from .train_seg import _logger

ENCODER_FORMAT = "cinerecon.encoder/1"


# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class EncoderConfig(PlainConfig):
    """Architecture of an :class:`Encoder`; plain types only so it round-trips through checkpoints.

    ``resolution``, ``num_ws`` and ``w_dim`` describe the generator the encoder
    inverts; left None they are filled in from it (:meth:`matched_to`, done by
    :func:`train_encoder`). Stage i of the backbone has ``min(width * 2**i,
    channel_max)`` channels and ``blocks[i]`` residual blocks.
    """

    resolution: int | None = None
    num_ws: int | None = None
    w_dim: int | None = None
    img_channels: int = 1
    width: int = 16
    channel_max: int = 64
    blocks: tuple = (1, 1, 1, 1)
    coarse_ws: int = 3
    medium_ws: int = 4

    def __post_init__(self):
        object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        if len(self.blocks) != 4 or min(self.blocks) < 1:
            raise ValueError(f"blocks must be 4 positive counts, got {self.blocks}")
        if self.img_channels < 1 or self.width < 1 or self.channel_max < 1 or self.coarse_ws < 1 \
                or self.medium_ws < 0:
            raise ValueError(f"invalid EncoderConfig {self}")
        for name in ("resolution", "num_ws", "w_dim"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be positive, got {v}")

    @classmethod
    def tiny(cls, **overrides) -> "EncoderConfig":
        """Stages of 16-32-64-64 channels, one block each (~1.7M parameters for a tiny 96 x 96 G, most in
        the ten map2style heads): CPU-trainable."""
        return cls(**{"width": 16, "channel_max": 64, "blocks": (1, 1, 1, 1), **overrides})

    @classmethod
    def paper(cls, **overrides) -> "EncoderConfig":
        """pSp's scale: 64-128-256-512 channels with 3-4-14-3 blocks (the IR-50 layout)."""
        return cls(**{"width": 64, "channel_max": 512, "blocks": (3, 4, 14, 3), **overrides})

    def matched_to(self, gen: StyleGAN2Config) -> "EncoderConfig":
        """This config with the generator's resolution, num_ws, w_dim and channels (error if set otherwise)."""
        want = {"resolution": gen.resolution, "num_ws": gen.num_ws, "w_dim": gen.w_dim,
                "img_channels": gen.img_channels}
        for k, v in want.items():
            if k != "img_channels" and getattr(self, k) is not None and getattr(self, k) != v:
                raise ValueError(f"EncoderConfig.{k} = {getattr(self, k)} but the generator has {v}")
        if self.img_channels != gen.img_channels:
            raise ValueError(f"EncoderConfig.img_channels = {self.img_channels} but the generator has "
                             f"{gen.img_channels}")
        return replace(self, **want)

    @property
    def complete(self) -> bool:
        return None not in (self.resolution, self.num_ws, self.w_dim)

    def channels(self, stage: int) -> int:
        return min(self.width * 2 ** stage, self.channel_max)

    def style_split(self) -> tuple[int, int, int]:
        """(coarse, medium, fine) numbers of style vectors."""
        coarse = min(self.coarse_ws, self.num_ws)
        medium = min(self.medium_ws, self.num_ws - coarse)
        return coarse, medium, self.num_ws - coarse - medium

    def to_dict(self) -> dict:
        d = asdict(self)
        d["blocks"] = list(self.blocks)
        return d



# --------------------------------------------------------------------------- network
def _gn(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(next(g for g in (8, 4, 2, 1) if channels % g == 0), channels)


class ResBlock(nn.Module):
    """Pre-activation residual block (GN, lrelu, conv3x3) x 2; strided 1x1 conv + GN shortcut if needed."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(_gn(c_in), nn.LeakyReLU(0.2), nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
                                  _gn(c_out), nn.LeakyReLU(0.2), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False))
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else \
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), _gn(c_out))

    def forward(self, x):
        return self.shortcut(x) + self.body(x)


class Map2Style(nn.Module):
    """Stride-2 3x3 convs (lrelu) down to 1x1, then a linear layer: one (N, w_dim) style vector."""

    def __init__(self, c_in: int, w_dim: int, spatial: int):
        super().__init__()
        n = max(1, math.ceil(math.log2(max(spatial, 1))))
        layers = []
        for i in range(n):
            layers += [nn.Conv2d(c_in if i == 0 else w_dim, w_dim, 3, 2, 1), nn.LeakyReLU(0.2)]
        self.convs = nn.Sequential(*layers)
        self.linear = nn.Linear(w_dim, w_dim)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.convs(x), 1).flatten(1)
        return self.linear(x)


class Encoder(nn.Module):
    """Images (N, C, H, W) in [-1, 1] -> W+ codes (N, num_ws, w_dim) = w_avg + delta(x)."""

    def __init__(self, config: EncoderConfig, w_avg: torch.Tensor | None = None):
        super().__init__()
        if not config.complete:
            raise ValueError("EncoderConfig needs resolution, num_ws and w_dim: use config.matched_to(G.config)")
        self.config = config
        ch = [config.channels(i) for i in range(4)]
        self.stem = nn.Sequential(nn.Conv2d(config.img_channels, ch[0], 3, 1, 1, bias=False), _gn(ch[0]),
                                  nn.LeakyReLU(0.2))
        stages, c_prev = [], ch[0]
        for i, (c, n) in enumerate(zip(ch, config.blocks)):
            stages.append(nn.Sequential(ResBlock(c_prev, c, 2), *[ResBlock(c, c, 1) for _ in range(n - 1)]))
            c_prev = c
        self.stages = nn.ModuleList(stages)
        fpn = ch[3]
        self.lateral = nn.ModuleList([nn.Conv2d(ch[1], fpn, 1), nn.Conv2d(ch[2], fpn, 1)])
        spatial = [config.resolution]
        for _ in range(4):
            spatial.append(-(-spatial[-1] // 2))
        fine_s, medium_s, coarse_s = spatial[2], spatial[3], spatial[4]
        n_c, n_m, n_f = config.style_split()
        self.heads = nn.ModuleList([Map2Style(fpn, config.w_dim, coarse_s) for _ in range(n_c)]
                                   + [Map2Style(fpn, config.w_dim, medium_s) for _ in range(n_m)]
                                   + [Map2Style(fpn, config.w_dim, fine_s) for _ in range(n_f)])
        self.split = (n_c, n_m, n_f)
        self.register_buffer("w_avg", torch.zeros(config.w_dim) if w_avg is None
                             else torch.as_tensor(w_avg, dtype=torch.float32).detach().clone().reshape(-1))
        if self.w_avg.shape != (config.w_dim,):
            raise ValueError(f"w_avg must have {config.w_dim} entries, got {tuple(self.w_avg.shape)}")

    @staticmethod
    def _up_add(x, y):
        return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=False) + y

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """The predicted offset from w_avg, (N, num_ws, w_dim)."""
        c = self.config
        if x.ndim != 4 or x.shape[1] != c.img_channels:
            raise ValueError(f"expected (N, {c.img_channels}, H, W), got {tuple(x.shape)}")
        feats = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        coarse = feats[3]
        medium = self._up_add(coarse, self.lateral[1](feats[2]))
        fine = self._up_add(medium, self.lateral[0](feats[1]))
        n_c, n_m, _ = self.split
        styles = [head(coarse if i < n_c else medium if i < n_c + n_m else fine)
                  for i, head in enumerate(self.heads)]
        return torch.stack(styles, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_avg + self.delta(x)


# --------------------------------------------------------------------------- perceptual distances
@runtime_checkable
class PerceptualDistance(Protocol):
    """Anything called as ``d(x, y)`` on image batches (N, C, H, W) in [-1, 1] that returns one
    distance per sample, shape (N,) (or (N, 1, 1, 1), as ``lpips.LPIPS``)."""

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...


def per_sample(d: torch.Tensor, n: int) -> torch.Tensor:
    """A distance output reshaped to (n,) (sums any trailing singleton/extra dims)."""
    return d.reshape(n, -1).sum(1)


class FeatureDistance(nn.Module):
    """LPIPS-style distance on the feature maps of any extractor (x -> list of (N, C_l, H_l, W_l)).

    d(x, y) = sum_l weight_l * mean_hw sum_c (f_l(x) / |f_l(x)|_c - f_l(y) / |f_l(y)|_c)^2,
    per sample (N,). The extractor is deep-copied, frozen and kept in eval mode;
    gradients flow to the inputs. Zero for identical inputs.
    """

    def __init__(self, extractor: nn.Module, weights: Sequence[float] | None = None, eps: float = 1e-10):
        super().__init__()
        self.extractor = copy.deepcopy(extractor).eval().requires_grad_(False)
        self.weights = None if weights is None else [float(w) for w in weights]
        self.eps = eps

    def train(self, mode: bool = True):
        super().train(mode)
        self.extractor.eval()
        return self

    def _features(self, x):
        f = self.extractor(x)
        return [f] if torch.is_tensor(f) else list(f)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape:
            raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        n = x.shape[0]
        both = self._features(torch.cat([x, y], dim=0))
        if self.weights is not None and len(self.weights) != len(both):
            raise ValueError(f"{len(self.weights)} weights for {len(both)} feature maps")
        total = x.new_zeros(n)
        for i, f in enumerate(both):
            f = f / (f.square().sum(dim=1, keepdim=True).sqrt() + self.eps)
            d = (f[:n] - f[n:]).square().sum(dim=1).mean(dim=(1, 2))
            total = total + (d if self.weights is None else self.weights[i] * d)
        return total


class UNetFeatures(nn.Module):
    """Encoder-path feature maps of a (frozen copy of a) cinerecon U-Net, one per level."""

    def __init__(self, unet):
        super().__init__()
        self.encoders = copy.deepcopy(unet.encoders)
        self.pool = copy.deepcopy(unet.pool)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x):
        feats = []
        for i, enc in enumerate(self.encoders):
            x = enc(x if i == 0 else self.pool(x))
            feats.append(x)
        return feats


def unet_features(unet) -> UNetFeatures:
    """A feature extractor from the pipeline's trained segmentation U-Net (its encoder levels),
    for :class:`FeatureDistance`: a cardiac-MRI-specific perceptual network with no downloads."""
    return UNetFeatures(unet)


# --------------------------------------------------------------------------- training
def train_encoder(G: Generator, images, config: EncoderConfig, steps: int = 1000, batch_size: int = 16,
                  lr: float = 1e-4, seed: int = 0, device="cpu", log=None,
                  perceptual: PerceptualDistance | None = None, l2_weight: float = 1.0,
                  perceptual_weight: float = 0.8, w_reg_weight: float = 0.005, log_every: int = 50,
                  E: Encoder | None = None, state: TrainingState | None = None,
                  workers: int = 0, precision: str = "fp32", deterministic: bool = True) -> tuple[Encoder, list[dict]]:
    """Train a W+ encoder for the frozen generator G on ``images`` (N, C, H, W) in [-1, 1]; return
    (E in eval mode, history).

    Loss (pSp) per batch: ``l2_weight * mean (x - G(E(x)))^2 + perceptual_weight *
    mean perceptual(G(E(x)), x) + w_reg_weight * mean ||E(x) - w_avg||_F``; the
    perceptual term only if ``perceptual`` is given (default None: pixel L2 and the
    latent regulariser alone). G synthesises with ``noise_mode='const'`` (as the
    inversion does); its parameters get no gradients and its requires_grad flags and
    mode are restored. ``w_avg`` is ``G.mean_w()``. Adam(lr); batches drawn with
    replacement, step s's from a generator seeded with (seed, s); ``images`` may be a
    memmap or a SliceStore (read by ``workers`` DataLoader processes). ``state`` saves the
    run when due and resumes a killed one to the same weights. ``precision`` fp32 | bf16 |
    fp16 (the loss in float32) and ``deterministic`` as in :mod:`cinerecon.models.runtime`.
    ``E`` continues training a given encoder (in place). ``history``: a row every
    ``log_every`` steps (every step if 0) and at the end, with step, the interval's means of
    loss, l2, perceptual (NaN without) and w_reg, and seconds.
    """
    device = torch.device(device)
    emit = _logger(log)
    config = config.matched_to(G.config)
    arr = as_training_images(images, config.img_channels, config.resolution)
    if steps < 0 or batch_size < 1:
        raise ValueError("need steps >= 0 and batch_size >= 1")
    if isinstance(perceptual, nn.Module):
        perceptual.to(device)
    G.to(device)
    flags, was_training = [p.requires_grad for p in G.parameters()], G.training
    G.requires_grad_(False).eval()
    history: list[dict] = []
    try:
        with seeded(seed, device, deterministic):
            if E is None:
                E = Encoder(config, G.mean_w())
            elif E.config != config:
                raise ValueError(f"E was built for {E.config}, not {config}")
            E = E.to(device).train()
            w_avg = E.w_avg
            opt = torch.optim.Adam(E.parameters(), lr=lr)
            amp = Precision(precision, device)
            optimizers = {"opt": opt, **amp.state()}
            plan = BatchPlan(len(arr), batch_size, seed, mode="replacement")
            means = IntervalMeans(("loss", "l2", "perceptual", "w_reg"))
            start = 0
            saved = state.load() if state is not None else None
            if saved is not None:
                start, history = saved["step"], restore(saved, {"E": E, "means": means}, optimizers)["history"]
            t0 = time.perf_counter()
            for step, (x,) in enumerate(batches(arr, plan, start, steps, workers), start=start + 1):
                x = x.to(device, dtype=torch.float32)
                with amp.autocast():
                    ws = E(x)
                    y = G.synthesis(ws, noise_mode="const")
                    p = per_sample(perceptual(y, x), len(x)).float().mean() if perceptual is not None else None
                ws, y = ws.float(), y.float()
                l2 = (y - x).square().mean()
                w_reg = (ws - w_avg).flatten(1).norm(dim=1).mean()
                loss = l2_weight * l2 + w_reg_weight * w_reg
                perc = float("nan")
                if p is not None:
                    loss = loss + perceptual_weight * p
                    perc = p.item()
                opt.zero_grad(set_to_none=True)
                amp.step(loss, opt)
                means.add(loss=loss.item(), l2=l2.item(), perceptual=perc, w_reg=w_reg.item())
                if step % max(1, log_every) == 0 or step == steps:
                    row = {"step": step, **means.take(), "seconds": time.perf_counter() - t0}
                    history.append(row)
                    emit(f"step {step}/{steps} loss {row['loss']:.4f} l2 {row['l2']:.4f} "
                         f"perceptual {row['perceptual']:.4f} w_reg {row['w_reg']:.3f} ({row['seconds']:.1f} s)")
                if state is not None:
                    state.maybe_save(step, lambda: snapshot(step, {"E": E, "means": means}, optimizers,
                                                            history=history))
    finally:
        for p, f in zip(G.parameters(), flags):
            p.requires_grad_(f)
        G.train(was_training)
    return E.eval(), history


def encode_images(E: Encoder, images, batch_size: int = 64, device=None) -> np.ndarray:
    """W+ codes (N, num_ws, w_dim) float32 of images (N, C, H, W), in batches; E's mode is restored."""
    images = np.asarray(images, dtype=np.float32)
    device = torch.device(device) if device is not None else E.w_avg.device
    E.to(device)
    was_training = E.training
    E.eval()
    out = np.empty((len(images), E.config.num_ws, E.config.w_dim), dtype=np.float32)
    try:
        with torch.inference_mode():
            for i in range(0, len(images), batch_size):
                out[i:i + batch_size] = E(torch.from_numpy(images[i:i + batch_size]).to(device)).cpu().numpy()
    finally:
        E.train(was_training)
    return out


# --------------------------------------------------------------------------- checkpoints
def save_encoder(E: Encoder, path) -> None:
    """Write {"format", "state_dict", "config"} (tensors and plain types only, w_avg included)
    atomically; loads with ``torch.load(weights_only=True)``."""
    save_weights(E, E.config.to_dict(), ENCODER_FORMAT, path)


def load_encoder(path, device="cpu") -> Encoder:
    """The encoder of a :func:`save_encoder` file, in eval mode on ``device``."""
    return load_model(path, ENCODER_FORMAT, "encoder", lambda c: Encoder(EncoderConfig.from_dict(c)), device)
