"""StyleGAN2 (Karras et al., CVPR 2020) for single-channel MRI slices: DeepRecon's generator G.

Architecture (config-f, "skip" generator and "resnet" discriminator):

* mapping network z -> w: pixel norm of z, ``mapping_layers`` equalised-lr fully
  connected layers with learning-rate multiplier ``mapping_lr_mul`` (0.01) and
  leaky ReLU; a running mean ``w_avg`` for truncation and as the encoder's origin.
* synthesis network: a learned constant, then per resolution a modulated 3x3
  convolution (weight demodulation), per-pixel noise with a learned per-channel
  strength, bias and leaky ReLU; a toRGB modulated 1x1 convolution (1 channel,
  no demodulation) per resolution whose outputs are up-sampled and summed (skip).
  Up-sampling is bilinear x2, i.e. the [1, 3, 3, 1] FIR filter of StyleGAN2.
* W+: one style vector per layer. ``G.num_ws = 2 * (number of doublings) + 2``
  (every conv layer one, plus the last toRGB; each toRGB shares the w of the next
  conv, as in the reference implementation). ``G.synthesis(ws)`` takes
  (N, num_ws, w_dim) (W+) or (N, w_dim) (W, broadcast to every layer).

Resolutions that are not a power of two (the crop size: 96, 112, ...): the
constant starts at ``start_resolution`` s0 in [4, 7] and is doubled k times, with
s0 * 2**k the smallest such size >= ``resolution``; the output is centre-cropped
to ``resolution``. So 128 = 4 * 2**5, 96 = 6 * 2**4, 80 = 5 * 2**4, 112 = 7 * 2**4
are generated exactly, and e.g. 100 is generated at 112 = 7 * 2**4 and cropped.
The discriminator sees the cropped ``resolution`` x ``resolution`` images only.

Noise: ``noise_mode='const'`` (the default everywhere outside training) uses a
fixed noise image per layer drawn once at construction and stored as a buffer
(so it is saved with the weights: a generator is a deterministic function of w,
which latent inversion and latent interpolation rely on); ``'random'`` draws fresh
noise from torch's global RNG (training); ``'none'`` switches noise off.

Training (:func:`train_stylegan2`) uses the non-saturating logistic loss, lazy R1
on reals every ``r1_interval`` steps, optional lazy path-length regularisation
(off by default), style mixing, Adam(0, 0.99) and an EMA of G. It is
deterministic on CPU given the seed.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import PlainConfig
from .checkpoints import load_model, save_weights
from .resume import TrainingState, restore, snapshot
from .slice_store import BatchPlan, batches
from .runtime import IntervalMeans, Precision, seeded
from .train_seg import _logger

GENERATOR_FORMAT = "cinerecon.stylegan2.generator/1"
DISCRIMINATOR_FORMAT = "cinerecon.stylegan2.discriminator/1"
NOISE_MODES = ("const", "random", "none")
_LRELU_GAIN = math.sqrt(2.0)


# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class StyleGAN2Config(PlainConfig):
    """Architecture of a StyleGAN2 G/D pair; plain types only so it round-trips through checkpoints.

    Channels at a feature resolution r are ``min(channel_base // r, channel_max)``
    (at least 1) in both G and D. ``start_resolution`` None picks s0 in [4, 7]
    automatically (see the module docstring); an explicit value is honoured.
    """

    resolution: int = 96
    img_channels: int = 1
    z_dim: int = 64
    w_dim: int = 64
    mapping_layers: int = 2
    mapping_lr_mul: float = 0.01
    channel_base: int = 1024
    channel_max: int = 64
    start_resolution: int | None = None
    mbstd_group: int = 4
    w_avg_beta: float = 0.995

    def __post_init__(self):
        if self.resolution < 4 or self.img_channels < 1 or self.z_dim < 1 or self.w_dim < 1:
            raise ValueError(f"invalid StyleGAN2Config {self}")
        if self.mapping_layers < 1 or self.mapping_lr_mul <= 0 or self.channel_base < 1 or self.channel_max < 1:
            raise ValueError(f"invalid StyleGAN2Config {self}")
        if self.start_resolution is not None and not 2 <= self.start_resolution <= self.resolution:
            raise ValueError(f"start_resolution must be in [2, resolution], got {self.start_resolution}")
        if self.mbstd_group < 1 or not 0.0 <= self.w_avg_beta < 1.0:
            raise ValueError(f"invalid StyleGAN2Config {self}")

    @classmethod
    def tiny(cls, **overrides) -> "StyleGAN2Config":
        """w_dim 64, 2 mapping layers, channels 1024 / r up to 64 (64-64-42-21-10 at 96x96; ~0.2M
        parameters in G, ~0.3M in D): about 1 step/s at batch 16 on 2 CPU cores (tests, demo cohort)."""
        return cls(**{"z_dim": 64, "w_dim": 64, "mapping_layers": 2, "channel_base": 1024,
                      "channel_max": 64, **overrides})

    @classmethod
    def paper(cls, **overrides) -> "StyleGAN2Config":
        """Full StyleGAN2 (config-f) width: z/w 512, 8 mapping layers, channels 32768 / r up to 512."""
        return cls(**{"z_dim": 512, "w_dim": 512, "mapping_layers": 8, "channel_base": 32768,
                      "channel_max": 512, **overrides})

    @property
    def levels(self) -> tuple[int, int]:
        """(start resolution s0, number of doublings k): s0 * 2**k >= resolution, minimal."""
        if self.start_resolution is not None:
            s0 = self.start_resolution
            k = max(0, math.ceil(math.log2(self.resolution / s0) - 1e-12))
            return s0, k
        k = max(0, int(math.floor(math.log2(self.resolution / 4))))
        s0 = -(-self.resolution // 2 ** k)
        if s0 == 8:  # 8 * 2**k == 4 * 2**(k + 1): the same size, one more doubling
            s0, k = 4, k + 1
        return s0, k

    @property
    def generated_resolution(self) -> int:
        """Size the synthesis network generates before centre-cropping to ``resolution``."""
        s0, k = self.levels
        return s0 * 2 ** k

    @property
    def num_ws(self) -> int:
        return 2 * self.levels[1] + 2

    def channels(self, res: int) -> int:
        return max(1, min(self.channel_base // res, self.channel_max))



# --------------------------------------------------------------------------- layers
class EqualLinear(nn.Module):
    """Fully connected layer with equalised learning rate: weights N(0, 1/lr_mul), scaled at runtime."""

    def __init__(self, c_in: int, c_out: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in) / lr_mul)
        self.bias = nn.Parameter(torch.full((c_out,), float(bias_init))) if bias else None
        self.weight_gain = lr_mul / math.sqrt(c_in)
        self.bias_gain = lr_mul
        self.activation = activation

    def forward(self, x):
        b = self.bias * self.bias_gain if self.bias is not None else None
        x = F.linear(x, self.weight * self.weight_gain, b)
        return F.leaky_relu(x, 0.2) * _LRELU_GAIN if self.activation else x


class EqualConv2d(nn.Module):
    """Conv with equalised learning rate, optional [1, 3, 3, 1] blur-down-sampling (stride 2) and lrelu."""

    def __init__(self, c_in: int, c_out: int, kernel: int, bias: bool = True, activation: bool = True,
                 down: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(c_in * kernel * kernel)
        self.activation, self.down, self.padding = activation, down, kernel // 2

    def forward(self, x):
        if self.down:
            x = blur_down(x)
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)
        return F.leaky_relu(x, 0.2) * _LRELU_GAIN if self.activation else x


_FIR = torch.tensor([1.0, 3.0, 3.0, 1.0])


def blur_down(x: torch.Tensor) -> torch.Tensor:
    """Low-pass with the [1, 3, 3, 1] FIR filter (edge-replicating pad) and keep every second
    pixel: H -> floor(H / 2), for any H, W."""
    c = x.shape[1]
    k = torch.outer(_FIR, _FIR).to(x)
    k = (k / k.sum()).expand(c, 1, 4, 4)
    x = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return F.conv2d(x, k, stride=2, groups=c)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """x2 bilinear up-sampling: the separable [1, 3, 3, 1] / 4 FIR up-sampling filter."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     padding: int = 0, eps: float = 1e-8) -> torch.Tensor:
    """StyleGAN2 modulated convolution of x (N, I, H, W) with weight (O, I, k, k) and styles (N, I).

    w'_nois = s_ni * w_ois, demodulated by d_no = 1 / sqrt(sum_is w'_nois^2 + eps), so
    that unit-variance inputs give unit-variance outputs whatever the style. It is
    computed as conv(x * s) * d with one shared weight (the "non-fused" form of the
    reference implementation): the same result as the grouped per-sample convolution,
    and faster for training batches.
    """
    n = x.shape[0]
    if styles.shape != (n, weight.shape[1]):
        raise ValueError(f"styles must be (N, {weight.shape[1]}), got {tuple(styles.shape)}")
    x = x * styles.reshape(n, -1, 1, 1)
    x = F.conv2d(x, weight, padding=padding)
    if demodulate:
        d = ((weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)).square().sum(dim=(2, 3, 4)) + eps).rsqrt()
        x = x * d.reshape(n, -1, 1, 1)
    return x


class ModulatedConv(nn.Module):
    """Affine(w) -> style, modulated conv (demodulated unless toRGB), optional x2 up-sampling first."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, kernel: int, demodulate: bool = True, up: bool = False):
        super().__init__()
        self.affine = EqualLinear(w_dim, c_in, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.weight_gain = 1.0 / math.sqrt(c_in * kernel * kernel)
        self.demodulate, self.up, self.padding = demodulate, up, kernel // 2

    def forward(self, x, w):
        if self.up:
            x = upsample2(x)
        styles = self.affine(w)
        if not self.demodulate:  # toRGB: no demodulation, so scale the style like an equalised conv
            styles = styles * self.weight_gain
            return modulated_conv2d(x, self.weight, styles, demodulate=False, padding=self.padding)
        return modulated_conv2d(x, self.weight, styles, demodulate=True, padding=self.padding)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv + noise (learned per-channel strength) + bias + lrelu."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, resolution: int, up: bool = False):
        super().__init__()
        self.conv = ModulatedConv(c_in, c_out, w_dim, 3, demodulate=True, up=up)
        self.resolution = resolution
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.noise_strength = nn.Parameter(torch.zeros(c_out))
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, x, w, noise_mode: str = "const"):
        x = self.conv(x, w)
        x = x + self.bias.reshape(1, -1, 1, 1)
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype)
            x = torch.addcmul(x, noise, self.noise_strength.reshape(1, -1, 1, 1))
        elif noise_mode == "const":
            x = torch.addcmul(x, self.noise_const, self.noise_strength.reshape(1, -1, 1, 1))
        return F.leaky_relu(x, 0.2) * _LRELU_GAIN


class ToRGB(nn.Module):
    def __init__(self, c_in: int, img_channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv(c_in, img_channels, w_dim, 1, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(img_channels))

    def forward(self, x, w):
        return self.conv(x, w) + self.bias.reshape(1, -1, 1, 1)


# --------------------------------------------------------------------------- generator
class MappingNetwork(nn.Module):
    """z -> w: pixel norm then ``mapping_layers`` equalised-lr FC layers (lr multiplier), lrelu."""

    def __init__(self, config: StyleGAN2Config):
        super().__init__()
        dims = [config.z_dim] + [config.w_dim] * config.mapping_layers
        self.layers = nn.ModuleList([EqualLinear(a, b, lr_mul=config.mapping_lr_mul, activation=True)
                                     for a, b in zip(dims[:-1], dims[1:])])
        self.register_buffer("w_avg", torch.zeros(config.w_dim))
        self.w_avg_beta = config.w_avg_beta

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, update_w_avg: bool = False) -> torch.Tensor:
        x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for layer in self.layers:
            x = layer(x)
        if update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().float().mean(0).lerp(self.w_avg, self.w_avg_beta))
        if truncation_psi != 1.0:
            x = self.w_avg.lerp(x, truncation_psi)
        return x


class SynthesisNetwork(nn.Module):
    """W+ (N, num_ws, w_dim) or W (N, w_dim) -> images (N, C, resolution, resolution)."""

    def __init__(self, config: StyleGAN2Config):
        super().__init__()
        self.config = config
        s0, k = config.levels
        self.resolutions = [s0 * 2 ** i for i in range(k + 1)]
        c0 = config.channels(s0)
        self.const = nn.Parameter(torch.randn(c0, s0, s0))
        self.convs = nn.ModuleList([SynthesisLayer(c0, c0, config.w_dim, s0)])
        self.torgbs = nn.ModuleList([ToRGB(c0, config.img_channels, config.w_dim)])
        for res in self.resolutions[1:]:
            c_in, c_out = config.channels(res // 2), config.channels(res)
            self.convs.append(SynthesisLayer(c_in, c_out, config.w_dim, res, up=True))
            self.convs.append(SynthesisLayer(c_out, c_out, config.w_dim, res))
            self.torgbs.append(ToRGB(c_out, config.img_channels, config.w_dim))
        self.num_ws = config.num_ws

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", crop: bool = True) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if ws.ndim == 2:
            ws = ws.unsqueeze(1).expand(-1, self.num_ws, -1)
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.config.w_dim):
            raise ValueError(f"ws must be (N, {self.num_ws}, {self.config.w_dim}) or (N, {self.config.w_dim}), "
                             f"got {tuple(ws.shape)}")
        x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        x = self.convs[0](x, ws[:, 0], noise_mode)
        img = self.torgbs[0](x, ws[:, 1])
        for i in range(1, len(self.resolutions)):
            x = self.convs[2 * i - 1](x, ws[:, 2 * i - 1], noise_mode)
            x = self.convs[2 * i](x, ws[:, 2 * i], noise_mode)
            img = upsample2(img) + self.torgbs[i](x, ws[:, 2 * i + 1])
        if crop:
            img = center_crop(img, self.config.resolution)
        return img


def center_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    h, w = img.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return img[..., top:top + size, left:left + size]


class Generator(nn.Module):
    """StyleGAN2 G = synthesis(mapping(z)); see the module docstring for W+, noise and sizes."""

    def __init__(self, config: StyleGAN2Config | None = None):
        super().__init__()
        self.config = config = config or StyleGAN2Config()
        self.mapping = MappingNetwork(config)
        self.synthesis = SynthesisNetwork(config)

    @property
    def num_ws(self) -> int:
        return self.config.num_ws

    @property
    def w_dim(self) -> int:
        return self.config.w_dim

    @property
    def z_dim(self) -> int:
        return self.config.z_dim

    @property
    def resolution(self) -> int:
        return self.config.resolution

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, noise_mode: str = "const") -> torch.Tensor:
        return self.synthesis(self.mapping(z, truncation_psi), noise_mode=noise_mode)

    def mean_w(self, n: int | None = None, seed: int = 0) -> torch.Tensor:
        """The mean latent (w_dim,): the tracked ``mapping.w_avg`` buffer if n is None, else a fresh
        Monte-Carlo mean of mapping(z) over n seeded z (both are detached)."""
        if n is None:
            return self.mapping.w_avg.detach().clone()
        device = self.mapping.w_avg.device
        gen = torch.Generator().manual_seed(seed)
        total = torch.zeros(self.w_dim, dtype=torch.float64, device=device)
        with torch.no_grad():
            for i in range(0, n, 4096):
                z = torch.randn(min(4096, n - i), self.z_dim, generator=gen).to(device)
                total += self.mapping(z).double().sum(0)
        return (total / n).float()

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """(N, w_dim) -> (N, num_ws, w_dim)."""
        return w.unsqueeze(1).repeat(1, self.num_ws, 1)


# --------------------------------------------------------------------------- discriminator
class DBlock(nn.Module):
    """Residual D block: conv3x3, conv3x3 + blur-down, plus 1x1 blur-down skip, times sqrt(1/2)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv0 = EqualConv2d(c_in, c_in, 3)
        self.conv1 = EqualConv2d(c_in, c_out, 3, down=True)
        self.skip = EqualConv2d(c_in, c_out, 1, bias=False, activation=False, down=True)

    def forward(self, x):
        return (self.skip(x) + self.conv1(self.conv0(x))) * math.sqrt(0.5)


def minibatch_stddev(x: torch.Tensor, group: int) -> torch.Tensor:
    """Append one channel: the std over groups of samples, averaged over channels and pixels.
    The group is the largest size <= ``group`` that divides the batch."""
    n, c, h, w = x.shape
    g = next(g for g in range(min(group, n), 0, -1) if n % g == 0)
    y = x.reshape(g, -1, c, h, w)
    y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt()
    y = y.mean(dim=(1, 2, 3)).reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator on (N, C, resolution, resolution): logits (N,).

    fromRGB at full resolution, k residual blocks (each halves the size), then
    minibatch stddev, conv 3x3, FC, FC -> 1. :meth:`features` gives the
    intermediate feature maps (any input size), for a perceptual distance.
    """

    def __init__(self, config: StyleGAN2Config | None = None):
        super().__init__()
        self.config = config = config or StyleGAN2Config()
        _, k = config.levels
        sizes = [config.resolution]
        for _ in range(k):
            sizes.append(sizes[-1] // 2)
        self.sizes = sizes
        self.from_rgb = EqualConv2d(config.img_channels, config.channels(sizes[0]), 1)
        self.blocks = nn.ModuleList([DBlock(config.channels(a), config.channels(b))
                                     for a, b in zip(sizes[:-1], sizes[1:])])
        c, r = config.channels(sizes[-1]), sizes[-1]
        self.mbstd_group = config.mbstd_group
        self.conv = EqualConv2d(c + 1, c, 3)
        self.fc = EqualLinear(c * r * r, c, activation=True)
        self.out = EqualLinear(c, 1)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps after fromRGB and after each residual block (finest first)."""
        feats = [self.from_rgb(x)]
        for block in self.blocks:
            feats.append(block(feats[-1]))
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.config.resolution
        if x.ndim != 4 or x.shape[1:] != (self.config.img_channels, r, r):
            raise ValueError(f"expected (N, {self.config.img_channels}, {r}, {r}), got {tuple(x.shape)}")
        x = self.features(x)[-1]
        x = self.conv(minibatch_stddev(x, self.mbstd_group))
        return self.out(self.fc(x.flatten(1))).squeeze(1)


class DiscriminatorFeatures(nn.Module):
    """Feature extractor (x -> list of feature maps) from a frozen copy of a discriminator."""

    def __init__(self, D: Discriminator):
        super().__init__()
        self.from_rgb = copy.deepcopy(D.from_rgb)
        self.blocks = copy.deepcopy(D.blocks)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.from_rgb(x)]
        for block in self.blocks:
            feats.append(block(feats[-1]))
        return feats


def discriminator_features(D: Discriminator) -> DiscriminatorFeatures:
    """A frozen copy of D's fromRGB + residual blocks returning their outputs: the feature
    extractor for :class:`cinerecon.models.encoder.FeatureDistance` that needs no downloaded weights."""
    return DiscriminatorFeatures(D)


# --------------------------------------------------------------------------- training
def as_training_images(images, channels: int, resolution: int):
    """Training images (N, channels, r, r): a numpy array (memmaps and SliceStores as they are)."""
    arr = images if hasattr(images, "shape") and not isinstance(images, torch.Tensor) \
        else np.asarray(images, dtype=np.float32)
    r = resolution
    if len(arr.shape) != 4 or tuple(arr.shape[1:]) != (channels, r, r):
        raise ValueError(f"expected images (N, {channels}, {r}, {r}), got {tuple(arr.shape)}")
    if len(arr) == 0:
        raise ValueError("no training images")
    return arr


def _mixed_ws(G: Generator, n: int, device, style_mixing: float, update_w_avg: bool) -> torch.Tensor:
    """W+ from random z, with a second z taking over from a random layer with probability style_mixing."""
    z = torch.randn(n, G.z_dim, device=device)
    ws = G.broadcast(G.mapping(z, update_w_avg=update_w_avg))
    if style_mixing > 0 and G.num_ws > 1:
        cutoff = int(torch.randint(1, G.num_ws, ()).item())
        mix = float(torch.rand(()).item()) < style_mixing
        z2 = torch.randn(n, G.z_dim, device=device)
        if mix:
            ws = torch.cat([ws[:, :cutoff], G.broadcast(G.mapping(z2))[:, cutoff:]], dim=1)
    return ws


@torch.no_grad()
def _ema_update(G_ema: Generator, G: Generator, beta: float) -> None:
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


def train_stylegan2(images, config: StyleGAN2Config, steps: int = 1000, batch_size: int = 16,
                    lr: float = 0.002, seed: int = 0, device="cpu", log=None, r1_gamma: float | None = None,
                    ema: bool = True, r1_interval: int = 16, style_mixing: float = 0.9,
                    pl_weight: float = 0.0, pl_interval: int = 4, pl_decay: float = 0.01,
                    ema_kimg: float | None = None, ema_rampup: float | None = 0.05,
                    log_every: int = 50, G: Generator | None = None,
                    D: Discriminator | None = None, state: TrainingState | None = None,
                    workers: int = 0, precision: str = "fp32",
                    deterministic: bool = True) -> tuple[Generator, list[dict]]:
    """Train StyleGAN2 on ``images`` (N, 1, H, W) in [-1, 1], H = W = ``config.resolution``;
    return (G_ema or G in eval mode, history).

    Each step is one D update (non-saturating logistic loss; every ``r1_interval``
    steps plus the lazy R1 penalty ``r1_gamma / 2 * |grad_x D(x)|^2 * r1_interval`` on
    the same batch of reals, in the same optimiser step, so Adam needs no lazy-step
    rescaling; ``r1_gamma`` None is StyleGAN2-ADA's heuristic 0.0002 * resolution**2 /
    batch_size, 0.12 at 96 x 96 and batch 16) and one G update (non-saturating loss;
    every ``pl_interval`` steps plus path-length regularisation if ``pl_weight > 0``), on
    a batch of reals drawn with replacement and ``batch_size`` fresh z with style
    mixing. Adam(lr, betas (0, 0.99)) for both. The EMA of G has a half-life of
    ``ema_kimg`` thousand images (default ``batch_size * 10 / 32``, as StyleGAN2-ADA)
    ramped up over the first 1 / ``ema_rampup`` of the images seen. At the end the
    returned G's ``mapping.w_avg`` is set to the Monte-Carlo mean of 10,000 w.

    ``images`` may be a numpy memmap or a SliceStore: only each batch is read (by
    ``workers`` DataLoader processes, ahead of time) and moved to ``device``; the rows of
    step s are drawn from a generator seeded with (seed, s). ``state`` saves the whole
    run when due (G, D, G_ema, both optimisers, RNG, history) and resumes a killed one to
    the same weights as an uninterrupted run. ``precision`` fp32 or bf16 (autocast of every
    forward pass; fp16 is refused: the R1 and path-length gradients would need their own
    loss scaling) and ``deterministic`` as in :mod:`cinerecon.models.runtime`. ``G``/``D``
    continue training given networks (modified in place; pass a ``Discriminator`` to keep
    it, e.g. for :func:`discriminator_features`); new ones are built from ``config``
    otherwise. ``history`` has a row every ``log_every`` steps (every step if 0) and at the
    end: step, the means over the interval of loss_G, loss_D, r1 (over the steps with R1;
    NaN if none), pl (likewise), seconds (since the start). ``log`` (a logging.Logger, a
    callable or None) gets the same line.
    """
    device = torch.device(device)
    emit = _logger(log)
    arr = as_training_images(images, config.img_channels, config.resolution)
    n_images = len(arr)
    if steps < 0 or batch_size < 1:
        raise ValueError("steps must be >= 0 and batch_size >= 1")
    if r1_gamma is None:
        r1_gamma = 0.0002 * config.resolution ** 2 / batch_size
    ema_nimg_full = (ema_kimg if ema_kimg is not None else batch_size * 10 / 32) * 1000
    history: list[dict] = []
    if precision == "fp16":
        raise ValueError("StyleGAN2 trains in fp32 or bf16 (fp16 would need loss scaling of R1 and path length)")
    amp = Precision(precision, device)
    with seeded(seed, device, deterministic):
        G = (G if G is not None else Generator(config)).to(device).train()
        D = (D if D is not None else Discriminator(config)).to(device).train()
        if G.config != config or D.config != config:
            raise ValueError("G and D must have been built from `config`")
        G_ema = copy.deepcopy(G).eval().requires_grad_(False) if ema else None
        opt_G = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.0, 0.99), eps=1e-8)
        opt_D = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.0, 0.99), eps=1e-8)
        plan = BatchPlan(n_images, batch_size, seed, mode="replacement")
        pl_mean = torch.zeros((), device=device)
        modules = {"G": G, "D": D, **({"G_ema": G_ema} if G_ema is not None else {})}
        optimizers = {"G": opt_G, "D": opt_D}
        means = IntervalMeans(("loss_G", "loss_D", "r1", "pl"))
        start = 0
        saved = state.load() if state is not None else None
        if saved is not None:
            extra = restore(saved, {**modules, "means": means}, optimizers)
            start, history, pl_mean = saved["step"], extra["history"], extra["pl_mean"].to(device)
        t0 = time.perf_counter()
        for step, (real,) in enumerate(batches(arr, plan, start, steps, workers), start=start + 1):
            # ---- D: logistic loss on fakes and reals (+ lazy R1 on the reals)
            real = real.to(device, dtype=torch.float32)
            do_r1 = r1_gamma > 0 and r1_interval > 0 and step % r1_interval == 0
            G.requires_grad_(False)
            D.requires_grad_(True)
            with amp.autocast():
                with torch.no_grad():
                    fake = G.synthesis(_mixed_ws(G, batch_size, device, style_mixing, update_w_avg=True),
                                       noise_mode="random")
                real.requires_grad_(do_r1)
                d_real = D(real)
                loss_D = F.softplus(D(fake).float()).mean() + F.softplus(-d_real.float()).mean()
                total_D = loss_D
                r1 = float("nan")
                if do_r1:
                    (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
                    r1_pen = grad.float().square().sum(dim=(1, 2, 3)).mean()
                    total_D = total_D + r1_pen * (r1_gamma / 2) * r1_interval
                    r1 = r1_pen.item()
            opt_D.zero_grad(set_to_none=True)
            total_D.backward()
            opt_D.step()

            # ---- G: non-saturating loss (+ lazy path-length regularisation)
            G.requires_grad_(True)
            D.requires_grad_(False)
            with amp.autocast():
                fake = G.synthesis(_mixed_ws(G, batch_size, device, style_mixing, update_w_avg=False),
                                   noise_mode="random")
                loss_G = F.softplus(-D(fake).float()).mean()
                total_G = loss_G
                pl = float("nan")
                if pl_weight > 0 and pl_interval > 0 and step % pl_interval == 0:
                    ws = _mixed_ws(G, max(1, batch_size // 2), device, style_mixing, update_w_avg=False)
                    img = G.synthesis(ws, noise_mode="random")
                    noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
                    (grad,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
                    lengths = grad.float().square().sum(2).mean(1).sqrt()
                    pl_mean = pl_mean.lerp(lengths.mean().detach(), pl_decay)
                    pl_pen = (lengths - pl_mean).square().mean()
                    total_G = total_G + pl_pen * pl_weight * pl_interval
                    pl = pl_pen.item()
            opt_G.zero_grad(set_to_none=True)
            total_G.backward()
            opt_G.step()

            if G_ema is not None:
                cur_nimg = step * batch_size
                ema_nimg = ema_nimg_full if ema_rampup is None else min(ema_nimg_full, cur_nimg * ema_rampup)
                _ema_update(G_ema, G, 0.5 ** (batch_size / max(ema_nimg, 1e-8)))
            means.add(loss_G=loss_G.item(), loss_D=loss_D.item(), r1=r1, pl=pl)
            if step % max(1, log_every) == 0 or step == steps:
                row = {"step": step, **means.take(), "seconds": time.perf_counter() - t0}
                history.append(row)
                emit(f"step {step}/{steps} loss_G {row['loss_G']:.4f} loss_D {row['loss_D']:.4f} "
                     f"r1 {row['r1']:.4f} pl {row['pl']:.4f} ({row['seconds']:.1f} s)")
            if state is not None:
                state.maybe_save(step, lambda: snapshot(step, {**modules, "means": means}, optimizers,
                                                        history=history, pl_mean=pl_mean))
        G.requires_grad_(True)
        D.requires_grad_(True)
        out = G_ema if G_ema is not None else G
        out.mapping.w_avg.copy_(out.mean_w(10_000, seed=seed))
    return out.eval(), history


# --------------------------------------------------------------------------- inference helpers
def generate_images(G: Generator, ws, batch_size: int = 64, device=None, noise_mode: str = "const") -> np.ndarray:
    """Images (N, C, resolution, resolution) float32 from latents (N, num_ws, w_dim) or (N, w_dim), in batches."""
    ws = torch.as_tensor(np.asarray(ws, dtype=np.float32))
    device = torch.device(device) if device is not None else next(G.parameters()).device
    G.to(device)
    r = G.resolution
    out = np.empty((len(ws), G.config.img_channels, r, r), dtype=np.float32)
    with torch.inference_mode():
        for i in range(0, len(ws), batch_size):
            out[i:i + batch_size] = G.synthesis(ws[i:i + batch_size].to(device), noise_mode=noise_mode).cpu().numpy()
    return out


# --------------------------------------------------------------------------- checkpoints
def save_generator(G: Generator, path) -> None:
    """Write {"format", "state_dict", "config"} (tensors and plain types only) atomically; loads
    with ``torch.load(weights_only=True)``. The const noise buffers and ``w_avg`` are included."""
    save_weights(G, G.config.to_dict(), GENERATOR_FORMAT, path)


def load_generator(path, device="cpu") -> Generator:
    """The generator of a :func:`save_generator` file, in eval mode on ``device``."""
    return load_model(path, GENERATOR_FORMAT, "StyleGAN2 generator",
                      lambda c: Generator(StyleGAN2Config.from_dict(c)), device)


def save_discriminator(D: Discriminator, path) -> None:
    """As :func:`save_generator`, for a discriminator (to reuse it as a perceptual feature extractor)."""
    save_weights(D, D.config.to_dict(), DISCRIMINATOR_FORMAT, path)


def load_discriminator(path, device="cpu") -> Discriminator:
    return load_model(path, DISCRIMINATOR_FORMAT, "StyleGAN2 discriminator",
                      lambda c: Discriminator(StyleGAN2Config.from_dict(c)), device)
