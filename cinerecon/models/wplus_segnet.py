"""W+SegNet (DeepRecon Table 1 ablation): segmentation predicted directly from a W+ code.

"A variant of our method keeps the same architecture except the Seg network takes
latent code as input to directly predict the segmentation." The network is a
decoder laid out like G's synthesis network (:mod:`cinerecon.models.stylegan2`):
a learned s0 x s0 constant, one 3x3 conv block at s0, then per doubling an
up-sampling block and a block at the new size, so that block i reads style i of
the W+ code, exactly the w that G's conv layer i reads; the last w modulates the
1x1 head (as G's last toRGB), which gives class logits. The output is centre-cropped
to the crop resolution. With num_ws = 2k + 2 (k doublings) the constant is
s0 = ceil(resolution / 2**k): 4 for 128, 6 for 96, G's own start size.

Simplification: blocks are AdaIN/FiLM style (conv -> instance norm ->
x * (1 + gamma(w)) + beta(w) -> leaky ReLU, with gamma, beta an affine projection of
the layer's w), not G's weight-(de)modulated convolutions, and there is no noise input.
Codes are standardised per (layer, dim) with the training set's mean and std, kept
as buffers so that they travel with the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import PlainConfig
from .checkpoints import load_model, save_weights
from .stylegan2 import StyleGAN2Config, center_crop, upsample2
from .runtime import seeded
from .train_seg import _logger, fit_best_epoch

CHECKPOINT_FORMAT = "cinerecon.wplus_segnet/1"


@dataclass(frozen=True)
class WPlusSegNetConfig(PlainConfig):
    """Architecture of a :class:`WPlusSegNet`; plain types only so it round-trips through checkpoints.

    ``num_ws`` and ``w_dim`` are those of the generator whose codes it reads (even
    num_ws = 2 * doublings + 2); channels at feature size r are
    ``min(channel_base // r, channel_max)`` (at least 1), as in G.
    """

    resolution: int = 96
    num_ws: int = 10
    w_dim: int = 64
    n_classes: int = 4
    channel_base: int = 1024
    channel_max: int = 64

    def __post_init__(self):
        if self.num_ws < 2 or self.num_ws % 2 or self.w_dim < 1 or self.n_classes < 2:
            raise ValueError(f"invalid WPlusSegNetConfig {self}")
        if self.channel_base < 1 or self.channel_max < 1:
            raise ValueError(f"invalid WPlusSegNetConfig {self}")
        if self.levels[0] < 2:
            raise ValueError(f"resolution {self.resolution} is too small for num_ws {self.num_ws} "
                             f"({self.levels[1]} doublings leave a constant under 2x2)")

    @classmethod
    def tiny(cls, **overrides) -> "WPlusSegNetConfig":
        """Channels 1024 / r up to 64, as the tiny G (~0.2M parameters at 96x96): CPU tests, demo cohort."""
        return cls(**{"channel_base": 1024, "channel_max": 64, **overrides})

    @classmethod
    def paper(cls, **overrides) -> "WPlusSegNetConfig":
        """G's config-f widths, channels 32768 / r up to 512, w_dim 512 (~24M parameters at 96x96)."""
        return cls(**{"w_dim": 512, "channel_base": 32768, "channel_max": 512, **overrides})

    def matched_to(self, g: StyleGAN2Config) -> "WPlusSegNetConfig":
        """This config reading the codes of a generator with config ``g``."""
        return replace(self, resolution=g.resolution, num_ws=g.num_ws, w_dim=g.w_dim)

    @property
    def levels(self) -> tuple[int, int]:
        """(start size s0, doublings k): k = num_ws / 2 - 1, s0 = ceil(resolution / 2**k)."""
        k = self.num_ws // 2 - 1
        return -(-self.resolution // 2 ** k), k

    def channels(self, res: int) -> int:
        return max(1, min(self.channel_base // res, self.channel_max))



class StyleBlock(nn.Module):
    """[x2 bilinear up] -> 3x3 conv -> instance norm -> FiLM from an affine of w (AdaIN) -> leaky ReLU."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, up: bool = False):
        super().__init__()
        self.up = up
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm = nn.InstanceNorm2d(c_out)
        self.affine = nn.Linear(w_dim, 2 * c_out)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(upsample2(x) if self.up else x))
        gamma, beta = self.affine(w)[:, :, None, None].chunk(2, dim=1)
        return F.leaky_relu(x * (1 + gamma) + beta, 0.2)


class WPlusSegNet(nn.Module):
    """Class logits (N, n_classes, resolution, resolution) from W+ codes (N, num_ws, w_dim)."""

    def __init__(self, config: WPlusSegNetConfig | None = None):
        super().__init__()
        self.config = config = config or WPlusSegNetConfig()
        s0, k = config.levels
        sizes = [s0 * 2 ** i for i in range(k + 1)]
        self.const = nn.Parameter(torch.randn(config.channels(s0), s0, s0))
        self.blocks = nn.ModuleList([StyleBlock(config.channels(s0), config.channels(s0), config.w_dim)])
        for res in sizes[1:]:
            c_in, c_out = config.channels(res // 2), config.channels(res)
            self.blocks.append(StyleBlock(c_in, c_out, config.w_dim, up=True))
            self.blocks.append(StyleBlock(c_out, c_out, config.w_dim))
        self.head_affine = nn.Linear(config.w_dim, config.channels(sizes[-1]))
        self.head = nn.Conv2d(config.channels(sizes[-1]), config.n_classes, 1)
        self.register_buffer("w_mean", torch.zeros(config.num_ws, config.w_dim))
        self.register_buffer("w_std", torch.ones(config.num_ws, config.w_dim))

    @torch.no_grad()
    def set_code_statistics(self, codes: torch.Tensor) -> None:
        """Standardise inputs with the per-(layer, dim) mean and std of ``codes`` (the training set);
        a (near-)constant dimension is only centred."""
        std = codes.std(0, unbiased=False)
        self.w_mean.copy_(codes.mean(0))
        self.w_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def forward(self, wplus: torch.Tensor) -> torch.Tensor:
        c = self.config
        if wplus.ndim != 3 or wplus.shape[1:] != (c.num_ws, c.w_dim):
            raise ValueError(f"expected W+ codes (N, {c.num_ws}, {c.w_dim}), got {tuple(wplus.shape)}")
        ws = (wplus - self.w_mean) / self.w_std
        x = self.const.unsqueeze(0).expand(len(ws), -1, -1, -1)
        for i, block in enumerate(self.blocks):
            x = block(x, ws[:, i])
        x = x * (1 + self.head_affine(ws[:, -1])[:, :, None, None])
        return center_crop(self.head(x), c.resolution)


def _as_tensors(codes, labels, config: WPlusSegNetConfig) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(np.asarray(codes, dtype=np.float32))
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    r = config.resolution
    if x.shape[1:] != (config.num_ws, config.w_dim) or y.shape != (len(x), r, r):
        raise ValueError(f"expected codes (N, {config.num_ws}, {config.w_dim}) and labels (N, {r}, {r}), "
                         f"got {tuple(x.shape)}, {tuple(y.shape)}")
    return x, y


def train_wplus_segnet(train_codes, train_labels, val_codes, val_labels, config: WPlusSegNetConfig,
                       epochs: int = 50, batch_size: int = 32, lr: float = 1e-3, seed: int = 0,
                       device="cpu", log=None, state=None) -> tuple[WPlusSegNet, list[dict]]:
    """Train with Adam on CE + soft Dice (``seg_loss``); return the best-validation-Dice model and history.

    As :func:`cinerecon.models.train_seg.train_unet` (deterministic given the seed,
    best epoch = highest mean foreground Dice pooled over the validation set, the
    same history columns, ``state`` to save and resume the run), without augmentation.
    Codes (N, num_ws, w_dim), labels (N, resolution, resolution) integers.
    """
    device = torch.device(device)
    emit = _logger(log)
    xt, yt = _as_tensors(train_codes, train_labels, config)
    xv, yv = _as_tensors(val_codes, val_labels, config)
    with seeded(seed, device):
        model = WPlusSegNet(config)
        model.set_code_statistics(xt)
        model.to(device)
        history = fit_best_epoch(model, (xt, yt), (xv, yv), config.n_classes, epochs, batch_size, lr, seed,
                                 device, emit, state=state)
    return model, history


def predict_wplus(model: WPlusSegNet, codes, batch_size: int = 64, device=None) -> np.ndarray:
    """Labels (N, resolution, resolution) uint8 for codes (N, num_ws, w_dim); train/eval mode restored."""
    codes = np.asarray(codes, dtype=np.float32)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    was_training = model.training
    model.eval()
    r = model.config.resolution
    out = np.empty((len(codes), r, r), dtype=np.uint8)
    try:
        with torch.inference_mode():
            for i in range(0, len(codes), batch_size):
                logits = model(torch.from_numpy(codes[i:i + batch_size]).to(device))
                out[i:i + batch_size] = logits.argmax(1).to(torch.uint8).cpu().numpy()
    finally:
        model.train(was_training)
    return out


def save_wplus_segnet(model: WPlusSegNet, path) -> None:
    """Weights-only checkpoint (config and code statistics included), written atomically."""
    save_weights(model, model.config.to_dict(), CHECKPOINT_FORMAT, path)


def load_wplus_segnet(path, device="cpu") -> WPlusSegNet:
    """The network of a :func:`save_wplus_segnet` file, in eval mode on ``device``."""
    return load_model(path, CHECKPOINT_FORMAT, "W+SegNet",
                      lambda c: WPlusSegNet(WPlusSegNetConfig.from_dict(c)), device)
