"""Gemini-GAN (Savioli et al.): joint 3D super-resolution and segmentation from a SAX stack.

One 2D U-Net encoder takes the low-resolution stack with its d slices as channels
(B, d, h, w); two decoders with skip connections from it give the high-resolution image
(B, D, f h, f w) and label logits (B, K, D, f h, f w), D = (d - 1) k + 1 + 2 (k // 2) thin
slices (cinerecon.baselines.grid's fine grid: acquired slice j on fine slice j k + k // 2)
and f the in-plane factor. Nothing is interpolated before the network (the paper; the
authors' code pre-interpolates): in-plane the decoders end in a learned f x up-convolution,
through-plane the output channels are the thin slices.

A discriminator of eight 3x3 convolutions (BN, LeakyReLU 0.2) sees the image concatenated
with the *soft* labels (softmax), so its gradient reaches the segmentation decoder (the
authors' code feeds it argmax labels, which no gradient crosses).

Loss (eq. 6): CE + lambda MSE + omega GAN, with the L2 penalty as Adam's weight decay
beta (the paper's training details). Ablations: `seg` (CE only: the paper's U-Net
segmentation-only row) and `image` (MSE only: its image-only row), without the GAN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import PlainConfig
from .unet import DoubleConv, Up

TASKS = ("joint", "seg", "image")


def fine_slices(in_slices: int, z_factor: int) -> int:
    """Thin slices of the fine grid over `in_slices` acquired ones (cinerecon.baselines.grid)."""
    return (in_slices - 1) * z_factor + 1 + 2 * (z_factor // 2)


@dataclass(frozen=True)
class GeminiConfig(PlainConfig):
    in_slices: int = 16       # d: acquired slices the network takes (fewer are padded)
    z_factor: int = 5         # k: thin slices per acquired spacing (10 mm -> 2 mm)
    xy_factor: int = 1        # f: in-plane pixels per acquired pixel
    n_classes: int = 4        # background, LVC, LVM, RVC
    width: int = 16
    depth: int = 3
    disc_width: int = 16
    disc_layers: int = 8
    task: str = "joint"       # joint | seg | image

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if min(self.in_slices, self.z_factor, self.xy_factor, self.width, self.depth, self.disc_width) < 1 \
                or self.n_classes < 2 or self.disc_layers < 2:
            raise ValueError(f"invalid GeminiConfig {self}")

    @classmethod
    def tiny(cls, **overrides) -> "GeminiConfig":
        """Width 16, depth 3 (~0.4M parameters at 16 slices): trains on a CPU in minutes."""
        return cls(**{"width": 16, "depth": 3, "disc_width": 16, **overrides})

    @classmethod
    def paper(cls, **overrides) -> "GeminiConfig":
        """Width 64, depth 4: the U-Net of Ronneberger et al. with twin decoders (GPU)."""
        return cls(**{"width": 64, "depth": 4, "disc_width": 64, **overrides})

    @property
    def out_slices(self) -> int:
        return fine_slices(self.in_slices, self.z_factor)

    @property
    def multiple(self) -> int:
        """h and w must be divisible by this."""
        return 2 ** self.depth

    @property
    def has_image(self) -> bool:
        return self.task in ("joint", "image")

    @property
    def has_seg(self) -> bool:
        return self.task in ("joint", "seg")


class Decoder(nn.Module):
    """Up-convolutions with the encoder's skips, then the in-plane factor, then a 1x1 head."""

    def __init__(self, channels: list[int], xy_factor: int, out_channels: int):
        super().__init__()
        self.ups = nn.ModuleList([Up(channels[i + 1], channels[i], "batch", "transpose")
                                  for i in reversed(range(len(channels) - 1))])
        c = channels[0]
        self.scale = nn.Identity() if xy_factor == 1 else nn.Sequential(
            nn.ConvTranspose2d(c, c, xy_factor, stride=xy_factor), DoubleConv(c, c, "batch"))
        self.head = nn.Conv2d(c, out_channels, 1)

    def forward(self, x, skips):
        for up, skip in zip(self.ups, reversed(skips)):
            x = up(x, skip)
        return self.head(self.scale(x))


class GeminiGenerator(nn.Module):
    """(B, d, h, w) stack in [-1, 1] -> (image (B, D, fh, fw) or None, logits (B, K, D, fh, fw) or None)."""

    def __init__(self, config: GeminiConfig):
        super().__init__()
        self.config = c = config
        ch = [c.width * 2 ** i for i in range(c.depth + 1)]
        self.encoders = nn.ModuleList([DoubleConv(c.in_slices, ch[0], "batch")]
                                      + [DoubleConv(ch[i], ch[i + 1], "batch") for i in range(c.depth)])
        self.pool = nn.MaxPool2d(2)
        self.image_decoder = Decoder(ch, c.xy_factor, c.out_slices) if c.has_image else None
        self.seg_decoder = Decoder(ch, c.xy_factor, c.n_classes * c.out_slices) if c.has_seg else None

    def forward(self, x: torch.Tensor):
        c = self.config
        if x.ndim != 4 or x.shape[1] != c.in_slices or x.shape[-2] % c.multiple or x.shape[-1] % c.multiple:
            raise ValueError(f"expected (B, {c.in_slices}, h, w) with h, w divisible by {c.multiple}, "
                             f"got {tuple(x.shape)}")
        skips = []
        for i, enc in enumerate(self.encoders):
            x = enc(x if i == 0 else self.pool(x))
            skips.append(x)
        bottom, skips = skips[-1], skips[:-1]
        image = None if self.image_decoder is None else self.image_decoder(bottom, skips)
        logits = None
        if self.seg_decoder is not None:
            out = self.seg_decoder(bottom, skips)
            logits = out.view(out.shape[0], c.n_classes, c.out_slices, *out.shape[-2:])
        return image, logits


class GeminiDiscriminator(nn.Module):
    """Real/fake logit of an image (B, D, H, W) concatenated with label probabilities (B, K, D, H, W)."""

    def __init__(self, config: GeminiConfig):
        super().__init__()
        c = config
        c_in = c.out_slices * ((1 if c.has_image else 0) + (c.n_classes if c.has_seg else 0))
        layers, width = [], c.disc_width
        for i in range(c.disc_layers):  # stride 2 every other layer, width doubling with it
            c_out = c.disc_width * 2 ** min(i // 2, 3)
            layers += [nn.Conv2d(c_in, c_out, 3, stride=1 + i % 2, padding=1, bias=i == 0)]
            layers += [nn.BatchNorm2d(c_out)] if i else []
            layers += [nn.LeakyReLU(0.2, inplace=True)]
            c_in, width = c_out, c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)

    def forward(self, image: torch.Tensor | None, probs: torch.Tensor | None) -> torch.Tensor:
        parts = ([image] if image is not None else []) + ([probs.flatten(1, 2)] if probs is not None else [])
        h = self.features(torch.cat(parts, dim=1))
        return self.head(h.mean(dim=(-2, -1))).squeeze(-1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` where mask is true (0 when nothing is)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


@dataclass(frozen=True)
class LossWeights:
    """Eq. 6's constants (the paper's training details): lambda = 1, omega = 1e-3; beta is
    Adam's weight decay, 1e-6."""

    mse: float = 1.0
    gan: float = 1e-3


def generator_loss(config: GeminiConfig, image, logits, target_image, target_labels, mask,
                   fake_logit: torch.Tensor | None, weights: LossWeights = LossWeights()) -> dict:
    """{"total", "ce", "mse", "gan"}: CE on the labels and MSE on the image over the voxels
    the truth covers (mask), and the non-saturating GAN term on the discriminator's logit."""
    zero = target_image.new_zeros(())
    ce = masked_mean(F.cross_entropy(logits, target_labels, reduction="none"), mask) if config.has_seg else zero
    mse = masked_mean((image - target_image) ** 2, mask) if config.has_image else zero
    gan = F.binary_cross_entropy_with_logits(fake_logit, torch.ones_like(fake_logit)) \
        if fake_logit is not None else zero
    return {"total": ce + weights.mse * mse + weights.gan * gan, "ce": ce, "mse": mse, "gan": gan}


def discriminator_loss(real_logit: torch.Tensor, fake_logit: torch.Tensor) -> torch.Tensor:
    """Eq. 5 for D: log D(real) + log(1 - D(fake)), as a BCE to minimise."""
    return (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
            + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))


def one_hot(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(B, D, H, W) integer labels -> (B, K, D, H, W) float."""
    return F.one_hot(labels.long(), n_classes).permute(0, 4, 1, 2, 3).float()
