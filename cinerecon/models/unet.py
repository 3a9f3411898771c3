"""A standard 2D U-Net (Ronneberger et al. 2015) for SAX slices, and its CE + soft-Dice loss.

Inputs are (B, in_channels, H, W) images in [-1, 1] with H and W divisible by
``2**depth`` (each level halves the size); :func:`forward_padded` pads any size
up to that multiple and crops the logits back, for inference on arbitrary crops.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import PlainConfig

NORMS = ("batch", "instance", "group")
UPSAMPLING = ("transpose", "bilinear")


@dataclass(frozen=True)
class UNetConfig(PlainConfig):
    """Architecture of a :class:`UNet`; plain types only so it round-trips through checkpoints.

    ``width`` is the channel count of the first level (doubled per level) and
    ``depth`` the number of down-sampling steps; ``dropout`` applies (Dropout2d)
    at the bottleneck only.
    """

    in_channels: int = 1
    n_classes: int = 4
    width: int = 8
    depth: int = 3
    norm: str = "batch"
    dropout: float = 0.0
    up: str = "transpose"

    def __post_init__(self):
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.up not in UPSAMPLING:
            raise ValueError(f"up must be one of {UPSAMPLING}, got {self.up!r}")
        if self.in_channels < 1 or self.n_classes < 2 or self.width < 1 or self.depth < 1:
            raise ValueError(f"invalid UNetConfig {self}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def tiny(cls, **overrides) -> "UNetConfig":
        """Width 8, depth 3 (~120k parameters): trains on a CPU in minutes (tests, demo cohort)."""
        return cls(**{"width": 8, "depth": 3, **overrides})

    @classmethod
    def paper(cls, **overrides) -> "UNetConfig":
        """Width 64, depth 4 (~31M parameters): the original U-Net, as DeepRecon's Seg."""
        return cls(**{"width": 64, "depth": 4, **overrides})

    @property
    def multiple(self) -> int:
        """H and W must be divisible by this."""
        return 2 ** self.depth



def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


class DoubleConv(nn.Sequential):
    """(3x3 conv -> norm -> ReLU) x 2; bias is dropped because the norm re-centres anyway."""

    def __init__(self, c_in: int, c_out: int, norm: str):
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), _norm(norm, c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), _norm(norm, c_out), nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    """Double the size (transposed conv, or bilinear + 1x1 conv), concatenate the skip, DoubleConv."""

    def __init__(self, c_in: int, c_out: int, norm: str, mode: str):
        super().__init__()
        if mode == "transpose":
            self.up = nn.ConvTranspose2d(c_in, c_out, 2, stride=2)
        else:
            self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                    nn.Conv2d(c_in, c_out, 1))
        self.conv = DoubleConv(2 * c_out, c_out, norm)

    def forward(self, x, skip):
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """2D U-Net: logits (B, n_classes, H, W) from (B, in_channels, H, W); H, W divisible by 2**depth."""

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        self.config = config = config or UNetConfig()
        ch = [config.width * 2 ** i for i in range(config.depth + 1)]
        self.encoders = nn.ModuleList(
            [DoubleConv(config.in_channels, ch[0], config.norm)]
            + [DoubleConv(ch[i], ch[i + 1], config.norm) for i in range(config.depth)])
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout2d(config.dropout) if config.dropout > 0 else nn.Identity()
        self.decoders = nn.ModuleList(
            [Up(ch[i + 1], ch[i], config.norm, config.up) for i in reversed(range(config.depth))])
        self.head = nn.Conv2d(ch[0], config.n_classes, 1)

    def _check(self, x: torch.Tensor) -> None:
        m = self.config.multiple
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected (B, {self.config.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(f"H, W = {tuple(x.shape[-2:])} must be divisible by 2**depth = {m}; "
                             "use forward_padded() for other sizes")

    def _encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        self._check(x)
        skips = []
        for i, enc in enumerate(self.encoders):
            x = enc(x if i == 0 else self.pool(x))
            skips.append(x)
        return skips[:-1], self.dropout(skips[-1])

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """Deepest features (B, width * 2**depth, H / 2**depth, W / 2**depth): DMCVR's morphology latent."""
        return self._encode(x)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips, x = self._encode(x)
        for dec, skip in zip(self.decoders, reversed(skips)):
            x = dec(x, skip)
        return self.head(x)


def pad_to_multiple(x: torch.Tensor, m: int) -> tuple[torch.Tensor, tuple[slice, slice]]:
    """Pad the last two dims (replicate, split evenly) up to multiples of m; return the padded
    tensor and the (row, column) slices that crop an output of the padded size back.

    Replicate padding rather than zeros: 0 is mid-grey in the [-1, 1] model range.
    """
    h, w = x.shape[-2:]
    ph, pw = -h % m, -w % m
    top, left = ph // 2, pw // 2
    if ph or pw:
        x = F.pad(x, (left, pw - left, top, ph - top), mode="replicate")
    return x, (slice(top, top + h), slice(left, left + w))


def forward_padded(model: UNet, x: torch.Tensor) -> torch.Tensor:
    """Logits for any H, W: pad to a multiple of 2**depth, run, crop back."""
    xp, (rows, cols) = pad_to_multiple(x, model.config.multiple)
    return model(xp)[..., rows, cols]


def soft_dice(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Per-class soft Dice (n_classes,) pooled over batch and pixels from softmax probabilities.

    dice_c = (2 * sum(p_c * g_c) + smooth) / (sum p_c + sum g_c + smooth); ``smooth``
    makes a class absent from both prediction and target score 1 instead of 0/0.
    """
    probs = logits.softmax(dim=1)
    onehot = F.one_hot(target.long(), logits.shape[1]).movedim(-1, 1).to(probs.dtype)
    dims = (0,) + tuple(range(2, logits.ndim))
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    return (2 * inter + smooth) / (denom + smooth)


def seg_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0,
             smooth: float = 1.0) -> torch.Tensor:
    """Cross-entropy + dice_weight * (1 - mean soft Dice over the foreground classes 1..n-1
    present in the batch's target).

    CE gives well-behaved per-pixel gradients early on; the Dice term counters the
    background's dominance of the pixel count (the heart is a few % of a SAX slice),
    as in DeepRecon's Seg. A class absent from the batch is left out of the Dice term: its
    smoothed Dice would reward predicting it nowhere, and with few labelled slices (UK
    Biobank's ED/ES labels) that was seen to collapse the RV class for good; CE still
    penalises false positives. ``target`` is (B, H, W) integer labels.
    """
    ce = F.cross_entropy(logits, target.long())
    per_class = soft_dice(logits, target, smooth)[1:]
    present = torch.bincount(target.flatten().long(), minlength=logits.shape[1])[1:] > 0
    dice = per_class[present].mean() if bool(present.any()) else per_class.mean()
    return ce + dice_weight * (1.0 - dice)
