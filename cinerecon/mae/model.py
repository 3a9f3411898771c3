"""The whole-heart masked autoencoder (Zhang et al., MICCAI 2024) and its heads.

Each of the 9 planes (6 SAX, 3 LAX; (S, T, P, P) per subject) is cut into 2D+T patches of
patch_xy x patch_xy pixels x patch_t frames; tokens are ordered plane, t, y, x. A fixed
4D sin-cos position embedding gives each token its (plane, t, y, x) index: the width is
split into four quarters, one per axis, each half sine, half cosine (MAE's 2D recipe in
four axes). The encoder (ViT, pre-norm blocks, a class token) sees the visible tokens
only; the decoder (lighter) puts mask tokens back, adds its own position embedding and
predicts every patch's pixels; the loss is the MSE over the whole input (the paper's
L = ||X - D(E(X_hat))||^2; the original MAE scores masked patches only).

Heads on the encoder (no masking; planes may be left out):
- `PhenotypeRegressor`: the mean of the encoder's tokens -> LayerNorm -> 256 -> GELU ->
  one output per phenotype (z-scored targets; the paper's "shallow linear layers" of 256);
- `MaeSegmenter`: a UNETR-style decoder. Tokens of the last block and of evenly spaced
  earlier blocks are folded back to each plane's (t, y, x) patch grid and up-convolved to
  the pixels, with a convolution of the plane's own image at full resolution, into one
  6-class softmax (0, LVC, LVM, RVC, LA, RA) in which SAX planes allow LVC/LVM/RVC and
  LAX planes LA/RA. Planes are folded into the batch, so cross-plane context comes from
  the encoder's attention (the authors fold planes into channels instead);
- `ResNetRegressor`: the paper's comparison row, planes x frames as the input channels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cinerecon.mae.inputs import N_CLASSES, PLANES, allowed_classes
from cinerecon.mae.presets import PATCHES
from cinerecon.models.config import PlainConfig


@dataclass(frozen=True)
class MaeConfig(PlainConfig):
    n_planes: int = len(PLANES)
    n_frames: int = 50
    pixels: int = 128
    patch_xy: int = 8
    patch_t: int = 25
    dim: int = 1024
    depth: int = 6
    heads: int = 16
    decoder_dim: int = 512
    decoder_depth: int = 2
    decoder_heads: int = 16
    mlp_ratio: float = 4.0
    mask_ratio: float = 0.7
    head_dim: int = 256      # the phenotype head's hidden width (the paper's 256)
    seg_width: int = 16      # UNETR feature size (the paper's decoder: 576 wide at its widest)
    n_targets: int = 5

    def __post_init__(self):
        if self.pixels % self.patch_xy or self.n_frames % self.patch_t:
            raise ValueError(f"{self.pixels} px x {self.n_frames} frames do not tile into "
                             f"{self.patch_xy} x {self.patch_xy} x {self.patch_t} patches")
        if self.patch_xy & (self.patch_xy - 1) or self.patch_xy < 2:
            raise ValueError(f"patch_xy must be a power of two, got {self.patch_xy}")
        if self.dim % 8 or self.decoder_dim % 8:
            raise ValueError("dim and decoder_dim must be multiples of 8 (four sin-cos axes)")
        if not 0 <= self.mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in [0, 1), got {self.mask_ratio}")

    @classmethod
    def paper(cls, **overrides) -> "MaeConfig":
        """128 px, 50 frames, 8 x 8 x 25 patches, 6 x 1024 encoder, 2-block decoder, 70 % masked."""
        patch_xy, patch_t = PATCHES["paper"]
        return cls(**{"patch_xy": patch_xy, "patch_t": patch_t, **overrides})

    @classmethod
    def tiny(cls, **overrides) -> "MaeConfig":
        """48 px, 10 frames, 8 x 8 x 5 patches, 2 x 64 encoder: pre-trains on a CPU in a minute."""
        patch_xy, patch_t = PATCHES["tiny"]
        base = dict(n_frames=10, pixels=48, patch_xy=patch_xy, patch_t=patch_t, dim=64, depth=2, heads=4, decoder_dim=32,
                    decoder_depth=2, decoder_heads=4, head_dim=32, seg_width=8)
        return cls(**{**base, **overrides})

    @property
    def grid(self) -> tuple[int, int, int, int]:
        """Patches per (plane, t, y, x)."""
        return (self.n_planes, self.n_frames // self.patch_t, self.pixels // self.patch_xy,
                self.pixels // self.patch_xy)

    @property
    def n_tokens(self) -> int:
        return math.prod(self.grid)

    @property
    def patch_voxels(self) -> int:
        return self.patch_t * self.patch_xy**2

    def n_visible(self, n_tokens: int) -> int:
        """Tokens kept by masking: exactly round(n (1 - ratio)) of n, for every subject."""
        return n_tokens - round(n_tokens * self.mask_ratio)


def sincos_1d(positions: torch.Tensor, width: int) -> torch.Tensor:
    """(n,) -> (n, width): half sines, half cosines at MAE's geometric frequencies."""
    omega = 1.0 / 10000 ** (torch.arange(width // 2, dtype=torch.float64) / (width // 2))
    angles = positions.double()[:, None] * omega[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def position_embedding(grid: tuple[int, int, int, int], width: int) -> torch.Tensor:
    """(prod(grid), width): a quarter of the width per axis (plane, t, y, x)."""
    index = torch.stack(torch.meshgrid(*(torch.arange(n) for n in grid), indexing="ij"), -1).reshape(-1, 4)
    return torch.cat([sincos_1d(index[:, a], width // 4) for a in range(4)], dim=1)


def patchify(image: torch.Tensor, config: MaeConfig) -> torch.Tensor:
    """(B, S, T, P, P) -> (B, n_tokens, patch_voxels) in token order (plane, t, y, x)."""
    b = image.shape[0]
    s, nt, ny, nx = config.grid
    pt, p = config.patch_t, config.patch_xy
    x = image.reshape(b, s, nt, pt, ny, p, nx, p).permute(0, 1, 2, 4, 6, 3, 5, 7)
    return x.reshape(b, s * nt * ny * nx, pt * p * p)


def unpatchify(tokens: torch.Tensor, config: MaeConfig) -> torch.Tensor:
    """Inverse of :func:`patchify`."""
    b = tokens.shape[0]
    s, nt, ny, nx = config.grid
    pt, p = config.patch_t, config.patch_xy
    x = tokens.reshape(b, s, nt, ny, nx, pt, p, p).permute(0, 1, 2, 5, 3, 6, 4, 7)
    return x.reshape(b, s, nt * pt, ny * p, nx * p)


def plane_tokens(config: MaeConfig, planes) -> torch.Tensor:
    """Token indices of the given planes (a plane's tokens are contiguous)."""
    per_plane = config.n_tokens // config.n_planes
    return torch.cat([torch.arange(per_plane) + i * per_plane for i in sorted(planes)])


def random_masking(n_batch: int, candidates: torch.Tensor, n_keep: int, gen: torch.Generator | None):
    """Per subject, `n_keep` of the `candidates` token indices kept at random: (B, n_keep), sorted."""
    noise = torch.rand(n_batch, len(candidates), generator=gen)
    keep = candidates[noise.argsort(dim=1)[:, :n_keep]]
    return keep.sort(dim=1).values


def _blocks(dim: int, depth: int, heads: int, mlp_ratio: float) -> nn.ModuleList:
    return nn.ModuleList(nn.TransformerEncoderLayer(dim, heads, int(dim * mlp_ratio), dropout=0.0,
                                                    activation="gelu", batch_first=True, norm_first=True)
                         for _ in range(depth))


class MaeEncoder(nn.Module):
    def __init__(self, config: MaeConfig):
        super().__init__()
        self.config = config
        self.patch_embed = nn.Linear(config.patch_voxels, config.dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.dim))
        self.register_buffer("pos", position_embedding(config.grid, config.dim), persistent=False)
        self.blocks = _blocks(config.dim, config.depth, config.heads, config.mlp_ratio)
        self.norm = nn.LayerNorm(config.dim)
        nn.init.normal_(self.cls_token, std=0.02)

    def embed(self, image: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """The kept tokens (B, n) of each subject, embedded and positioned: (B, n, dim)."""
        patches = patchify(image, self.config)
        picked = torch.gather(patches, 1, keep[..., None].expand(-1, -1, patches.shape[-1]))
        return self.patch_embed(picked) + self.pos[keep]

    def forward(self, image: torch.Tensor, keep: torch.Tensor, hidden: bool = False):
        """Encoder output (B, 1 + n, dim) with the class token first; `hidden`: also every
        block's output (without the final norm)."""
        x = self.embed(image, keep)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1)
        states = []
        for block in self.blocks:
            x = block(x)
            states.append(x)
        return (self.norm(x), states) if hidden else self.norm(x)

    def all_tokens(self, n_batch: int, planes=None) -> torch.Tensor:
        """Every token of `planes` (default all), for each subject: (B, n)."""
        planes = range(self.config.n_planes) if planes is None else planes
        return plane_tokens(self.config, planes)[None].expand(n_batch, -1).to(self.pos.device)


class WholeHeartMAE(nn.Module):
    """Encoder + reconstruction decoder (phase I)."""

    def __init__(self, config: MaeConfig):
        super().__init__()
        self.config = config
        self.encoder = MaeEncoder(config)
        self.decoder_embed = nn.Linear(config.dim, config.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.decoder_dim))
        self.register_buffer("decoder_pos", position_embedding(config.grid, config.decoder_dim), persistent=False)
        self.decoder_blocks = _blocks(config.decoder_dim, config.decoder_depth, config.decoder_heads, config.mlp_ratio)
        self.decoder_norm = nn.LayerNorm(config.decoder_dim)
        self.decoder_pred = nn.Linear(config.decoder_dim, config.patch_voxels)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, image: torch.Tensor, gen: torch.Generator | None = None):
        """(predicted patches (B, n_tokens, patch_voxels), kept token indices (B, n_keep))."""
        c = self.config
        candidates = torch.arange(c.n_tokens)
        keep = random_masking(len(image), candidates, c.n_visible(c.n_tokens), gen).to(image.device)
        latent = self.encoder(image, keep)
        x = self.mask_token.expand(len(image), c.n_tokens, -1).clone()
        x = x.scatter(1, keep[..., None].expand(-1, -1, c.decoder_dim), self.decoder_embed(latent[:, 1:]))
        x = torch.cat([self.decoder_embed(latent[:, :1]), x + self.decoder_pos], dim=1)
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:], keep

    def loss(self, image: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        predicted, _ = self(image, gen)
        return F.mse_loss(predicted, patchify(image, self.config))

    def represent(self, image: torch.Tensor, planes=None) -> torch.Tensor:
        """The whole-heart representation: the mean of the encoder's tokens, nothing masked,
        from the given planes only (default all): (B, dim)."""
        return self.encoder(image, self.encoder.all_tokens(len(image), planes))[:, 1:].mean(dim=1)


class PhenotypeRegressor(nn.Module):
    def __init__(self, config: MaeConfig):
        super().__init__()
        self.config = config
        self.encoder = MaeEncoder(config)
        self.head = nn.Sequential(nn.LayerNorm(config.dim), nn.Linear(config.dim, config.head_dim), nn.GELU(),
                                  nn.Linear(config.head_dim, config.n_targets))

    def represent(self, image: torch.Tensor, planes=None) -> torch.Tensor:
        return self.encoder(image, self.encoder.all_tokens(len(image), planes))[:, 1:].mean(dim=1)

    def forward(self, image: torch.Tensor, planes=None) -> torch.Tensor:
        """z-scored phenotypes (B, n_targets)."""
        return self.head(self.represent(image, planes))


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(c_in, c_out, 3, padding=1), nn.InstanceNorm3d(c_out, affine=True),
                         nn.LeakyReLU(0.01), nn.Conv3d(c_out, c_out, 3, padding=1),
                         nn.InstanceNorm3d(c_out, affine=True), nn.LeakyReLU(0.01))


class MaeSegmenter(nn.Module):
    def __init__(self, config: MaeConfig):
        super().__init__()
        c, w = config, config.seg_width
        self.config = config
        self.encoder = MaeEncoder(config)
        self.levels = int(math.log2(c.patch_xy))  # x2 in-plane up-convolutions from patches to pixels
        # skip i (1 .. levels-1) comes from the block i * depth / levels, the bottleneck from the last
        self.skip_blocks = [max(0, round(i * c.depth / self.levels) - 1) for i in range(1, self.levels)]
        width = [w * 2 ** (self.levels - i) for i in range(self.levels + 1)]  # at each level, coarse -> fine
        self.bottleneck = nn.Conv3d(c.dim, width[0], 1)
        self.ups = nn.ModuleList(nn.ConvTranspose3d(width[i], width[i + 1], (1, 2, 2), (1, 2, 2))
                                 for i in range(self.levels))
        self.skips = nn.ModuleList(nn.ConvTranspose3d(c.dim, width[i], (1, 2**i, 2**i), (1, 2**i, 2**i))
                                   for i in range(1, self.levels))
        self.merges = nn.ModuleList(_conv_block(2 * width[i], width[i]) for i in range(1, self.levels))
        self.temporal = nn.ConvTranspose3d(w, w, (c.patch_t, 1, 1), (c.patch_t, 1, 1))
        self.image_block = _conv_block(1, w)
        self.out = nn.Sequential(_conv_block(2 * w, w), nn.Conv3d(w, N_CLASSES, 1))
        self.register_buffer("allowed", torch.from_numpy(allowed_classes()), persistent=False)

    def _grid(self, tokens: torch.Tensor, planes: list[int]) -> torch.Tensor:
        """(B, len(planes) * per_plane, dim) -> (B * len(planes), dim, nt, ny, nx)."""
        _, nt, ny, nx = self.config.grid
        b = tokens.shape[0]
        return tokens.reshape(b * len(planes), nt, ny, nx, -1).permute(0, 4, 1, 2, 3)

    def forward(self, image: torch.Tensor, planes=None) -> torch.Tensor:
        """Logits (B, len(planes), 6, T, P, P); classes a plane cannot hold are -inf-like."""
        planes = sorted(range(self.config.n_planes) if planes is None else planes)
        b = image.shape[0]
        latent, states = self.encoder(image, self.encoder.all_tokens(b, planes), hidden=True)
        x = self.bottleneck(self._grid(latent[:, 1:], planes))
        for i, up in enumerate(self.ups, start=1):
            x = up(x)
            if i < self.levels:
                skip = self.skips[i - 1](self._grid(states[self.skip_blocks[i - 1]][:, 1:], planes))
                x = self.merges[i - 1](torch.cat([x, skip], dim=1))
        x = self.temporal(x)
        pixels = image[:, planes].reshape(b * len(planes), 1, *image.shape[2:])
        logits = self.out(torch.cat([x, self.image_block(pixels)], dim=1))
        logits = logits.reshape(b, len(planes), N_CLASSES, *image.shape[2:])
        blocked = ~self.allowed[planes][None, :, :, None, None, None]
        return logits.masked_fill(blocked, torch.finfo(logits.dtype).min / 4)


class _Residual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                                  nn.ReLU(inplace=True), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(c_out))
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        return F.relu(self.body(x) + self.shortcut(x))


@dataclass(frozen=True)
class ResNetConfig(PlainConfig):
    in_channels: int = len(PLANES) * 50
    width: int = 64
    blocks: tuple = (3, 4, 6, 3)
    n_targets: int = 5

    @classmethod
    def from_dict(cls, d: dict):
        return super().from_dict({**d, "blocks": tuple(d.get("blocks", cls.blocks))})


class ResNetRegressor(nn.Module):
    """A residual network over the concatenated planes, frames as channels (the paper's
    ResNet50 row; basic blocks: (3, 4, 6, 3) is ResNet34's layout)."""

    def __init__(self, config: ResNetConfig):
        super().__init__()
        self.config = config
        w = config.width
        layers = [nn.Conv2d(config.in_channels, w, 7, 2, 3, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        c = w
        for stage, n in enumerate(config.blocks):
            for j in range(n):
                out = w * 2**stage
                layers.append(_Residual(c, out, 2 if j == 0 and stage > 0 else 1))
                c = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, config.n_targets)

    def forward(self, image: torch.Tensor, planes=None) -> torch.Tensor:
        """image (B, S, T, P, P); left-out planes are zeros (the network has no other way)."""
        if planes is not None:
            keep = torch.zeros(image.shape[1], dtype=torch.bool, device=image.device)
            keep[list(planes)] = True
            image = image * keep[None, :, None, None, None]
        x = self.features(image.flatten(1, 2))
        return self.head(x.mean(dim=(2, 3)))
