"""DeepRecon (Chang et al., MICCAI 2022): hybrid GAN inversion of SAX slices into W+.

    w+* = argmin  l1 * (Lperc(x, G(w)) + ||ROI (x - G(w))||^2)
                + l2 * (-NCC_local(x, G(w)))
                + l3 * ||w - E(G(w))||^2,        starting from w = E(x)

Every slice of every subject in a batch is its own optimisation problem. The loss is a
sum of per-sample terms and G, E have no batch coupling, so one Adam over the stacked
codes is exactly independent per-sample Adam (Adam is elementwise), run as one batched
forward/backward instead of a Python loop per slice.

The perceptual distance is a `FeatureDistance` over the features of a network the
pipeline trains itself (the SAX segmentation U-Net's encoder), as LPIPS's ImageNet
weights cannot be downloaded here; any callable (x, y) -> per-sample distance can
replace it (e.g. LPIPS when its weights are provided).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from cinerecon.models.model_grid import ModelGrid

log = logging.getLogger(__name__)


@dataclass
class InversionSettings:
    steps: tuple = (0, 1000, 10000)   # variants: codes are recorded after each count
    lr: float = 0.01
    lambda_recon: float = 1.0         # l1: perceptual + ROI L2
    lambda_ncc: float = 1.0           # l2: local normalised cross-correlation
    lambda_domain: float = 0.1        # l3: stay where the encoder maps
    ncc_window: int = 9               # pixels
    roi_radius_mm: float = 50.0       # around the crop centre (the heart)
    batch_size: int = 256             # slices optimised together
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict | None) -> "InversionSettings":
        d = dict(d or {})
        if "steps" in d:
            d["steps"] = tuple(sorted(int(s) for s in d["steps"]))
        return cls(**d)


def roi_mask(shape, spacing_mm, radius_mm: float, device=None) -> torch.Tensor:
    """(1, 1, H, W) soft disc of radius_mm around the image centre (the crop is heart-centred)."""
    h, w = shape
    y = (torch.arange(h, dtype=torch.float32) - (h - 1) / 2) * float(spacing_mm[0])
    x = (torch.arange(w, dtype=torch.float32) - (w - 1) / 2) * float(spacing_mm[1])
    r = torch.sqrt(y[:, None] ** 2 + x[None, :] ** 2)
    mask = torch.sigmoid((radius_mm - r) / 2.0)  # ~4 mm soft edge
    return mask[None, None].to(device)


def local_ncc(x: torch.Tensor, y: torch.Tensor, window: int = 9, eps: float = 1e-5) -> torch.Tensor:
    """Mean local normalised cross-correlation per sample (N,), in [-1, 1] (VoxelMorph style)."""
    kernel = torch.ones(1, x.shape[1], window, window, device=x.device, dtype=x.dtype)
    pad = window // 2
    n = window * window * x.shape[1]

    def box(a):  # window sums; borders replicate, so affine intensity changes stay invisible
        return F.conv2d(F.pad(a, (pad, pad, pad, pad), mode="replicate"), kernel)

    sx, sy = box(x), box(y)
    sxx, syy, sxy = box(x * x), box(y * y), box(x * y)
    cross = sxy - sx * sy / n
    var_x = (sxx - sx * sx / n).clamp_min(0)
    var_y = (syy - sy * sy / n).clamp_min(0)
    ncc = cross / torch.sqrt(var_x * var_y + eps)
    return ncc.flatten(1).mean(1)


def inversion_loss(x: torch.Tensor, ws: torch.Tensor, G, E, perceptual, roi: torch.Tensor,
                   s: InversionSettings) -> tuple[torch.Tensor, dict]:
    """Per-sample hybrid loss (N,) and its terms (detached means) for logging."""
    fake = G.synthesis(ws, noise_mode="const")
    perc = perceptual(fake, x) if perceptual is not None else torch.zeros(len(x), device=x.device)
    roi_l2 = (roi * (x - fake) ** 2).flatten(1).sum(1) / roi.sum()
    ncc = local_ncc(x, fake, s.ncc_window)
    loss = s.lambda_recon * (perc + roi_l2) - s.lambda_ncc * ncc
    if s.lambda_domain:
        domain = ((ws - E(fake)) ** 2).flatten(1).mean(1)
        loss = loss + s.lambda_domain * domain
    else:
        domain = torch.zeros_like(loss)
    terms = {"perceptual": perc.mean().item(), "roi_l2": roi_l2.mean().item(),
             "ncc": ncc.mean().item(), "domain": domain.mean().item()}
    return loss, terms


def _freeze(module):
    if module is None:
        return None
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def invert_batch(x: torch.Tensor, G, E, perceptual, roi: torch.Tensor, s: InversionSettings,
                 history: list | None = None) -> dict[int, torch.Tensor]:
    """{steps: W+ codes (N, num_ws, w_dim)} for one batch of images (N, 1, H, W) in [-1, 1]."""
    with torch.no_grad():
        start = E(x)
    codes = {0: start.clone()} if 0 in s.steps else {}
    total = max(s.steps) if s.steps else 0
    if total == 0:
        return codes
    ws = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([ws], lr=s.lr)
    for step in range(1, total + 1):
        loss, terms = inversion_loss(x, ws, G, E, perceptual, roi, s)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()  # a sum: each sample's gradient is its own
        opt.step()
        if history is not None and (step == 1 or step % max(1, total // 20) == 0 or step == total):
            history.append({"step": step, "loss": loss.mean().item(), **terms})
        if step in s.steps:
            codes[step] = ws.detach().clone()
    return codes


def invert_slices(images: np.ndarray, G, E, perceptual, spacing_mm, settings: InversionSettings,
                  device="cpu", history: list | None = None) -> dict[int, np.ndarray]:
    """Invert many slices (N, 1, H, W) in [-1, 1], in batches: {steps: (N, num_ws, w_dim) float32}."""
    G, E, perceptual = _freeze(G.to(device)), _freeze(E.to(device)), _freeze(perceptual)
    if perceptual is not None:
        perceptual.to(device)
    # crops on G's grid (deeprecon.image_size): same field of view, so coarser pixels
    grid = ModelGrid.of(G, images.shape[-1])
    spacing_mm = np.asarray(spacing_mm, dtype=float) * grid.pixel_scale
    roi = roi_mask((G.resolution, G.resolution), spacing_mm, settings.roi_radius_mm, device)
    out: dict[int, list] = {}
    started = time.perf_counter()
    for i in range(0, len(images), settings.batch_size):
        x = grid.to_model(images[i:i + settings.batch_size]).to(device)
        for steps, codes in invert_batch(x, G, E, perceptual, roi, settings, history).items():
            out.setdefault(steps, []).append(codes.cpu().numpy().astype(np.float32))
    seconds = time.perf_counter() - started
    log.info("inverted %d slices x %d steps in %.1f s", len(images), max(settings.steps, default=0), seconds)
    return {steps: np.concatenate(chunks) for steps, chunks in out.items()}


def generate(G, ws: np.ndarray, batch_size: int = 64, device="cpu", crop: int | None = None) -> np.ndarray:
    """Images (N, 1, H, W) of W+ codes (N, num_ws, w_dim), constant noise; with `crop`, on the
    crops' grid (resampled from G's over the same field of view if G's size differs)."""
    G = _freeze(G.to(device))
    grid = ModelGrid.of(G, crop or G.resolution)
    chunks = []
    with torch.no_grad():
        for i in range(0, len(ws), batch_size):
            w = torch.as_tensor(ws[i:i + batch_size], dtype=torch.float32, device=device)
            chunks.append(grid.to_crop(G.synthesis(w, noise_mode="const")).clamp(-1, 1).cpu().numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, 1, grid.crop, grid.crop), dtype=np.float32)
