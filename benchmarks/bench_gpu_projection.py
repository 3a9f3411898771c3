"""GPU-hours of every GPU stage at the `paper` preset for a cohort of N subjects, projected
from counted FLOPs (and, on a GPU machine, from measured seconds).

Usage: python benchmarks/bench_gpu_projection.py [--subjects 50000] [--labelled 1000] [--tflops 100]
           [--frames 50] [--slices 10] [--slice-spacing-mm 10] [--splits 0.7 0.1 0.2]
           [--preset config/presets/paper.yaml] [--device cuda] [--repeats 3]

Each row is one kind of work of one `resources: gpu=1` rule (rules/*.smk). The networks are
built with the pipeline's own config functions at the preset's sizes (untrained weights: cost
does not depend on them) and one call of the pipeline's model code on one unit (batch 1: every
network here is linear in the batch) is counted by torch.utils.flop_counter.FlopCounterMode,
on the meta device (shapes only, seconds); the inversion step, whose loss calls .item(), is
counted on the CPU (same count as its pieces on meta; it has no attention, which the CPU's
kernels would hide from the counter). A training unit is one image (or subject) of one optimisation step,
forward and backward, with the discriminator, R1, LPIPS-style and z_mor parts the code has.
FlopCounterMode counts matrix products, convolutions and attention only: norms, activations,
resampling, the optimiser update and the EMA are elementwise and left out (losses made only
of such terms are replaced by a plain mean for the same reason). GPU-hours = FLOPs / the
sustained throughput `--tflops`.

With --device cuda on a machine with a GPU, every unit is also timed on it at the batch size
and precision the pipeline uses for that call (warm-up, then `--repeats` calls; optimiser
steps not included), and a measured column is added.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
import yaml
from torch.utils.flop_counter import FlopCounterMode

from cinerecon.baselines.grid import fine_positions, z_upsampling_factor
from cinerecon.latent.deeprecon import (
    InversionSettings,
    _freeze,
    inversion_loss,
    roi_mask,
)
from cinerecon.latent.dmcvr import diffusion_config
from cinerecon.latent.names import deeprecon_variant
from cinerecon.mae.files import mae_config, removals, resnet_config
from cinerecon.mae.inputs import PLANES
from cinerecon.mae.model import (
    MaeSegmenter,
    PhenotypeRegressor,
    ResNetRegressor,
    WholeHeartMAE,
)
from cinerecon.metrics.heldout import interior_slices
from cinerecon.models.diffusion import DiffAE
from cinerecon.models.encoder import (
    Encoder,
    EncoderConfig,
    FeatureDistance,
    per_sample,
    unet_features,
)
from cinerecon.models.gemini_gan import (
    GeminiDiscriminator,
    GeminiGenerator,
    discriminator_loss,
    generator_loss,
    one_hot,
)
from cinerecon.models.model_grid import ModelGrid
from cinerecon.models.runtime import Precision
from cinerecon.models.stylegan2 import Discriminator, Generator, StyleGAN2Config
from cinerecon.models.unet import UNet, UNetConfig, forward_padded
from cinerecon.models.vama import (
    Vama,
    VamaConfig,
    adversarial,
    kl_to_standard_normal,
    reconstruction_loss,
)
from cinerecon.models.wplus_segnet import WPlusSegNet, WPlusSegNetConfig
from cinerecon.superres.files import gemini_config

ROOT = Path(__file__).resolve().parents[1]
PIXEL_MM = 1.8  # UK Biobank SAX in-plane spacing (the inversion's ROI radius is in mm)
FAMILY = {"dmcvr": "DMCVR", "diffae": "DiffAE"}


# --------------------------------------------------------------------------- the networks
class Models:
    """The preset's networks on one device, built when first used (on `meta`: shapes only)."""

    def __init__(self, p: dict, device: str, spacing_mm: float):
        self.p, self.device, self.spacing_mm = p, torch.device(device), spacing_mm
        self.crop = p["crop"]["sax_size"][0]
        self.built: list[torch.nn.Module] = []
        self._gemini: dict = {}

    def _make(self, build):
        with torch.device(self.device):
            torch.manual_seed(0)
            model = build().to(self.device)  # (buffers made from numpy start on the CPU)
        self.built.append(model)
        return model

    def autocast(self):
        """The bf16 autocast of the trainings with `precision: bf16`, on the GPU (counting needs none)."""
        return Precision("bf16" if self.device.type == "cuda" else "fp32", self.device).autocast()

    def no_grad(self):
        """no_grad on the GPU; counting keeps autograd on (same forward FLOPs: FlopCounterMode's module
        hooks fail on some tensors made under no_grad)."""
        return torch.no_grad() if self.device.type == "cuda" else contextlib.nullcontext()

    def rand(self, *shape):
        return torch.rand(*shape, device=self.device) * 2 - 1

    @cached_property
    def unet(self):  # the SAX U-Net (segmentation.model), also DeepRecon's LPIPS net and DMCVR's z_mor
        return self._make(lambda: UNet(getattr(UNetConfig, self.p["segmentation"]["model"])()))

    @cached_property
    def gan_config(self):
        d = self.p["deeprecon"]
        return getattr(StyleGAN2Config, d["preset"])(resolution=d.get("image_size") or self.crop)

    @cached_property
    def G(self):
        return self._make(lambda: Generator(self.gan_config))

    @cached_property
    def D(self):
        return self._make(lambda: Discriminator(self.gan_config))

    @cached_property
    def E(self):
        config = getattr(EncoderConfig, self.p["deeprecon"]["preset"])().matched_to(self.gan_config)
        return self._make(lambda: Encoder(config, self.G.mean_w()))

    @cached_property
    def perceptual(self):  # deeprecon_files.perceptual_from_seg
        return self._make(lambda: FeatureDistance(unet_features(self.unet)))

    @cached_property
    def wplus(self):
        c = self.gan_config
        config = getattr(WPlusSegNetConfig, self.p["segmentation"]["model"])(
            resolution=c.resolution, num_ws=c.num_ws, w_dim=c.w_dim)
        return self._make(lambda: WPlusSegNet(config))

    @cached_property
    def diffae(self):  # {method: DiffAE}; DMCVR carries the U-Net for z_mor, DiffAE has none
        out = {}
        for method in self.p["dmcvr"]["methods"]:
            seg = self.unet if method == "dmcvr" else None
            config = diffusion_config(self.p["dmcvr"], self.crop, seg)
            out[method] = self._make(lambda config=config, seg=seg: DiffAE(config, seg_model=seg))
        return out

    def gemini(self, method: str):
        """(generator, discriminator or None) of a Gemini-GAN method (the ablations have no D)."""
        if method not in self._gemini:
            config = gemini_config(self.p["gemini_gan"], method, gemini_z_factor(self.p, self.spacing_mm))
            G = self._make(lambda: GeminiGenerator(config))
            D = self._make(lambda: GeminiDiscriminator(config)) if config.task == "joint" else None
            self._gemini[method] = (G, D)
        return self._gemini[method]

    @cached_property
    def vama(self):
        v = self.p["gemini_gan"]["vama"]
        return self._make(lambda: Vama(getattr(VamaConfig, v["preset"])(**v.get("model", {}))))

    @cached_property
    def mae_config(self):
        return mae_config(self.p["mae"])

    @cached_property
    def mae_pre(self):
        return self._make(lambda: WholeHeartMAE(self.mae_config))

    @cached_property
    def mae_pheno(self):
        return self._make(lambda: PhenotypeRegressor(self.mae_config))

    @cached_property
    def mae_seg(self):
        return self._make(lambda: MaeSegmenter(self.mae_config))

    @cached_property
    def resnet(self):
        return self._make(lambda: ResNetRegressor(resnet_config(self.p["mae"])))

    def volume(self, n):
        c = self.mae_config
        return self.rand(n, len(PLANES), c.n_frames, c.pixels, c.pixels)

    def zero_grad(self):
        for model in self.built:
            model.zero_grad(set_to_none=True)


def gemini_z_factor(p: dict, spacing_mm: float) -> int:
    return max(1, round(spacing_mm / p["gemini_gan"]["slice_mm"]))  # superres.files.z_factor_of


def hours_text(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def proxy_loss(out):
    """A loss with no counted work (CE, Dice, MSE are elementwise), keeping the backward whole."""
    return out.float().mean()


# --------------------------------------------------------------------------- units of work
# Each takes (models, n) and does n units' work as the pipeline's code does it.
def unet_fwd(m, n):  # train_seg.predict_slices
    with m.no_grad():
        forward_padded(m.unet.eval(), m.rand(n, 1, m.crop, m.crop))


def unet_train(m, n):  # train_seg.fit_best_epoch (bf16 autocast); CE + Dice as a mean
    model = m.unet.train().requires_grad_(True)
    with m.autocast():
        logits = model(m.rand(n, 1, m.crop, m.crop))
    proxy_loss(logits).backward()


def g_fwd(m, n):  # deeprecon.generate
    with m.no_grad():
        m.G.eval().synthesis(m.rand(n, m.G.num_ws, m.G.w_dim), noise_mode="const")


def e_fwd(m, n):  # the inversion's start, E(x)
    with m.no_grad():
        m.E.eval()(m.rand(n, 1, m.G.resolution, m.G.resolution))


def _mixed_ws(G, n, device):
    """train_stylegan2's W+ with style mixing (the mapping twice; its random cut-off without .item())."""
    ws = [G.broadcast(G.mapping(torch.randn(n, G.z_dim, device=device))) for _ in range(2)]
    return torch.cat([ws[0][:, :G.num_ws // 2], ws[1][:, G.num_ws // 2:]], dim=1)


def gan_step(m, n, r1=False):  # train_stylegan2's loop body: a D step (+ lazy R1), then a G step
    G, D = m.G.train(), m.D.train()
    # (a non-leaf input: FlopCounterMode's module hooks refuse autograd.grad of a leaf; same work)
    real = m.rand(n, 1, G.resolution, G.resolution).requires_grad_(r1) * 1
    G.requires_grad_(False)
    D.requires_grad_(True)
    with m.autocast():
        with m.no_grad():
            fake = G.synthesis(_mixed_ws(G, n, m.device), noise_mode="random")
        d_real = D(real)
        loss = F.softplus(D(fake).float()).mean() + F.softplus(-d_real.float()).mean()
        if r1:
            (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
            loss = loss + grad.float().square().sum(dim=(1, 2, 3)).mean()
    loss.backward()
    G.requires_grad_(True)
    D.requires_grad_(False)
    with m.autocast():
        loss = F.softplus(-D(G.synthesis(_mixed_ws(G, n, m.device), noise_mode="random")).float()).mean()
    loss.backward()


def encoder_step(m, n):  # train_encoder's loop body: pSp loss with the U-Net LPIPS, G frozen
    G, perceptual = _freeze(m.G), _freeze(m.perceptual)
    E = m.E.train().requires_grad_(True)
    x = m.rand(n, 1, G.resolution, G.resolution)
    with m.autocast():
        ws = E(x)
        y = G.synthesis(ws, noise_mode="const")
        p = per_sample(perceptual(y, x), n).float().mean()
    loss = (y.float() - x).square().mean() + 0.005 * (ws.float() - E.w_avg).flatten(1).norm(dim=1).mean() + 0.8 * p
    loss.backward()


def inversion_step(m, n):  # invert_batch's loop body: the hybrid loss of G, E, LPIPS and NCC, backward to w
    G, E, perceptual = _freeze(m.G), _freeze(m.E), _freeze(m.perceptual)
    settings = InversionSettings.from_dict(m.p["deeprecon"]["inversion"])
    r = G.resolution
    roi = roi_mask((r, r), (PIXEL_MM * m.crop / r,) * 2, settings.roi_radius_mm, m.device)
    ws = (G.mean_w() + 0.1 * torch.randn(n, G.num_ws, G.w_dim, device=m.device)).requires_grad_(True)
    loss, _ = inversion_loss(m.rand(n, 1, r, r), ws, G, E, perceptual, roi, settings)
    loss.sum().backward()


def wplus_fwd(m, n):
    with m.no_grad():
        m.wplus.eval()(torch.randn(n, m.G.num_ws, m.G.w_dim, device=m.device))


def wplus_train(m, n):  # fit_best_epoch without autocast (train_wplus_segnet passes no precision)
    proxy_loss(m.wplus.train()(torch.randn(n, m.G.num_ws, m.G.w_dim, device=m.device))).backward()


def diffusion_step(m, n, method):  # train_diffae's loop body: z_mor, E_sem and the denoiser
    model = m.diffae[method].train()
    c = model.config
    stored = m.rand(n, 1, m.crop, m.crop)
    x0 = ModelGrid(m.crop, c.image_size, c.multiple).to_model(stored)
    t = torch.randint(c.num_timesteps, (n,), device=m.device)
    noise = torch.randn_like(x0)
    a = model.alphas_cumprod.to(device=m.device, dtype=torch.float32)[t].view(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    with m.autocast():
        z_mor = model.morphology(stored) if model.seg_model is not None else None
        eps = model(x_t, t, model.encode_sem(x0), z_mor)
    F.mse_loss(eps.float(), noise).backward()


def diffusion_codes(m, n, method):  # DiffAE.encode's z_sem (E_sem) and z_mor (the U-Net's bottleneck)
    model = m.diffae[method].eval()
    stored = m.rand(n, 1, m.crop, m.crop)
    with m.no_grad():
        model.encode_sem(ModelGrid.of(model, m.crop).to_model(stored))
        if model.seg_model is not None:
            model.morphology(stored)


def denoiser_call(m, n, method):  # one DDIM step (inversion or decoding): one eps_theta call
    model = m.diffae[method].eval()
    c = model.config
    z_mor = torch.randn(n, c.mor_channels, m.crop // m.unet.config.multiple, m.crop // m.unet.config.multiple,
                        device=m.device) if c.morphology else None
    with m.no_grad():
        model.denoiser(m.rand(n, 1, c.image_size, c.image_size), torch.full((n,), 999, device=m.device),
                       torch.randn(n, c.z_sem_dim, device=m.device), z_mor)


def _gemini_batch(m, n, config, size):
    f = config.xy_factor
    return (m.rand(n, config.in_slices, size, size), m.rand(n, config.out_slices, f * size, f * size),
            torch.zeros(n, config.out_slices, f * size, f * size, dtype=torch.long, device=m.device),
            torch.ones(n, config.out_slices, f * size, f * size, dtype=torch.bool, device=m.device))


def gemini_step(m, n, method):  # superres.train.train_gemini's loop body (no autocast)
    G, D = m.gemini(method)
    c = G.config
    x, image, labels, mask = _gemini_batch(m, n, c, m.p["gemini_gan"].get("crop") or m.crop)
    fake_image, logits = G.train()(x)
    fake_logit = None
    if D is not None:
        probs = torch.where(mask[:, None], F.softmax(logits, 1), one_hot(labels, c.n_classes))
        fake_image = torch.where(mask, fake_image, image)
        d_loss = discriminator_loss(D.train()(image, one_hot(labels, c.n_classes)),
                                    D(fake_image.detach(), probs.detach()))
        d_loss.backward()
        fake_logit = D(fake_image, probs)
    generator_loss(c, fake_image, logits, image, labels, mask, fake_logit)["total"].backward()


def gemini_fwd(m, n, method):  # superres.files.predict: one ED or ES stack, padded in-plane
    G, _ = m.gemini(method)
    size = -(-m.crop // G.config.multiple) * G.config.multiple
    with m.no_grad():
        G.eval()(m.rand(n, G.config.in_slices, size, size))


def vama_step(m, n, first):  # superres.train.train_vama's loop body, target (first) or source network
    model, gen = m.vama.train(), torch.Generator().manual_seed(0)
    size = -(-m.crop // model.config.multiple) * model.config.multiple
    s, c, t = (m.rand(n, 1, size, size) for _ in range(3))
    if first:
        (out, mu, log_sigma), reference, real, disc = model.target_pass(c, s, gen), c, c, model.d_target
    else:
        (out, mu, log_sigma), reference, real, disc = model.source_pass(s, c, gen), s, t, model.d_source
    (adversarial(disc(real), True) + adversarial(disc(out.detach()), False)).backward()
    cfg = model.config
    loss = reconstruction_loss(out, reference) + cfg.kl_weight * kl_to_standard_normal(mu, log_sigma) \
        + cfg.gan_weight * adversarial(disc(out), True)
    loss.backward()


def mae_pretrain_step(m, n):  # mae.train.pretraining: masked reconstruction (no autocast)
    m.mae_pre.train().loss(m.volume(n)).backward()


def mae_pheno_step(m, n):
    proxy_loss(m.mae_pheno.train()(m.volume(n))).backward()


def mae_seg_step(m, n):  # the partial-label CE + Dice as a mean
    proxy_loss(m.mae_seg.train()(m.volume(n))).backward()


def resnet_step(m, n):
    proxy_loss(m.resnet.train()(m.volume(n))).backward()


def mae_seg_fwd(m, n):
    with m.no_grad():
        m.mae_seg.eval()(m.volume(n))


def mae_eval(m, n):
    """mae.files.evaluate_subject without the segmentation: the ResNet, the phenotype head and the
    representation on every plane, then both again without each plane and `pairs` plane pairs."""
    image = m.volume(n)
    pre, pheno = m.mae_pre.eval(), m.mae_pheno.eval()
    with m.no_grad():
        m.resnet.eval()(image)
        pheno(image)
        pre.represent(image)
        mae = m.p["mae"]
        for removed in removals("S", mae["robustness"]["pairs"], mae["seed"]):
            kept = [p for p in range(len(PLANES)) if p not in removed]
            pre.represent(image, kept)
            pheno(image, kept)


# --------------------------------------------------------------------------- counting, timing
@dataclass
class Work:
    fn: object
    kwargs: dict = field(default_factory=dict)
    calls: float = 1.0  # calls of fn per unit of the row
    batch: int = 1      # units per call in the pipeline (timing only)
    amp: bool = False   # the pipeline autocasts it to bf16 (trainings with `precision: bf16`)

    @property
    def key(self):
        return (self.fn.__name__, tuple(sorted(self.kwargs.items())))


class Counter:
    """FLOPs of one unit of each kind of work, counted once."""

    def __init__(self, preset: dict, spacing_mm: float):
        self.models = {d: Models(preset, d, spacing_mm) for d in ("meta", "cpu")}
        self.flops, self.where = {}, {}

    def __call__(self, w: Work) -> float:
        if w.key not in self.flops:
            # the CPU only where the code needs values (.item()): its attention kernels escape
            # FlopCounterMode, so a unit with attention must count on meta
            for device in ("meta", "cpu"):
                try:
                    with FlopCounterMode(display=False) as counter:
                        w.fn(self.models[device], 1, **w.kwargs)
                except (NotImplementedError, RuntimeError):
                    if device == "cpu":
                        raise
                    continue
                self.models[device].zero_grad()
                self.flops[w.key], self.where[w.key] = counter.get_total_flops(), device
                break
        return self.flops[w.key]


class Timer:
    """Seconds per unit of each kind of work on a GPU, at the pipeline's batch (the units of work
    autocast where the pipeline does)."""

    def __init__(self, preset: dict, spacing_mm: float, repeats: int, device: str = "cuda"):
        self.models, self.repeats, self.seconds = Models(preset, device, spacing_mm), repeats, {}

    def _sync(self):
        if self.models.device.type == "cuda":
            torch.cuda.synchronize()

    def __call__(self, w: Work) -> float:
        if w.key not in self.seconds:
            m = self.models
            w.fn(m, w.batch, **w.kwargs)  # warm-up (cuDNN autotuning, allocations)
            m.zero_grad()
            self._sync()
            start = time.perf_counter()
            for _ in range(self.repeats):
                w.fn(m, w.batch, **w.kwargs)
                m.zero_grad()
            self._sync()
            self.seconds[w.key] = (time.perf_counter() - start) / self.repeats / w.batch
        return self.seconds[w.key]


# --------------------------------------------------------------------------- the cohort's work
def cohort(args, p: dict) -> dict:
    """Subject counts per subset (rules/common.smk) and work per subject (the preset, UK Biobank)."""
    n, lab = args.subjects, args.labelled
    train, val, test = args.splits
    z = args.slices
    k = z_upsampling_factor(args.slice_spacing_mm, p["recon"]["target_spacing_mm"])
    return {
        "N": n, "test": round(n * test), "pretrain": round(n * (train + val)),
        "lab_train": round(lab * train), "lab_val": round(lab * val), "lab_test": round(lab * test),
        "frames": args.frames, "slices": z, "k": k,
        "ed_es": 2 * z,                                  # subject_slices: ED and ES, every slice
        "fine": 2 * len(fine_positions(z, k)),           # the shared fine grid at ED and ES
        "fine_unique": 2 * ((z - 1) * k + 1),            # less its end slabs' copies (decode_codes)
        "heldout": 2 * len(interior_slices(z)),          # held-out interior slices at ED and ES
    }


def rows(p: dict, c: dict) -> list[dict]:
    seg, dr, dm, gg, mae = p["segmentation"], p["deeprecon"], p["dmcvr"], p["gemini_gan"], p["mae"]
    inv = dr["inversion"]
    inv_steps = max(inv["steps"])
    train_slices, val_slices = c["lab_train"] * c["ed_es"], c["lab_val"] * c["ed_es"]
    val_per_train = val_slices / train_slices
    every = (c["N"], f"each of {c['N']:,} subjects")
    tests = (c["test"], f"{c['test']:,} test subjects")
    lab_tests = (c["lab_test"], f"{c['lab_test']:,} labelled test subjects")

    def once(subjects: str):
        return (1, f"once per cohort ({subjects})")

    seg_training = once(f"{c['lab_train']:,} + {c['lab_val']:,} labelled train + val")
    pretraining = once(f"{c['pretrain']:,} train + val subjects")
    fit = [Work(unet_train, batch=seg["batch_size"], amp=True),
           Work(unet_fwd, calls=val_per_train, batch=seg["batch_size"])]   # + the epoch's validation
    inversion = [Work(inversion_step, batch=inv["batch_size"]),
                 Work(e_fwd, calls=1 / inv_steps, batch=inv["batch_size"])]  # + the start, E(x)
    n_var = len(inv["steps"])
    step = "slice x step: G, E, LPIPS, NCC fwd+bwd"
    # One run per slice up to max(steps) records every variant's codes on the way: a row per
    # variant with the steps it adds (deeprecon_no: the start, E(x), alone)
    counts = sorted(int(n) for n in inv["steps"])
    variants = [("DeepRecon", "invert", deeprecon_variant(n), step if n else "slice: E forward",
                 [Work(inversion_step, batch=inv["batch_size"])] if n else [Work(e_fwd, batch=inv["batch_size"])],
                 c["ed_es"] * max(1, n - before),
                 f"{c['ed_es']} ED/ES slices x {n - before:,} more steps" if n else f"{c['ed_es']} ED/ES slices",
                 every) for before, n in zip([0] + counts, counts)]
    out = [
        ("segmentation", "seg", "U-Net", "SAX slice: U-Net forward",
         [Work(unet_fwd, batch=seg["batch_size"] * 4)],  # the seg rule's batch
         c["frames"] * c["slices"], f"{c['frames']} frames x {c['slices']} slices", every),
        ("segmentation", "train_seg", "U-Net", "slice-epoch: fwd+bwd (+ val fwd)", fit,
         seg["epochs"] * train_slices, f"{seg['epochs']} epochs x {train_slices:,} slices", seg_training),
        ("DeepRecon", "train_stylegan2", "StyleGAN2 G+D", "image-step: D (+R1 1/16), G fwd+bwd",
         [Work(gan_step, calls=15 / 16, batch=dr["batch_size"], amp=True),
          Work(gan_step, {"r1": True}, calls=1 / 16, batch=dr["batch_size"], amp=True)],
         dr["gan_steps"] * dr["batch_size"], f"{dr['gan_steps']:,} steps x {dr['batch_size']}", pretraining),
        ("DeepRecon", "train_encoder", "pSp E", "image-step: E fwd+bwd, G, U-Net LPIPS",
         [Work(encoder_step, batch=dr["batch_size"], amp=True)],
         dr["encoder_steps"] * dr["batch_size"], f"{dr['encoder_steps']:,} steps x {dr['batch_size']}", pretraining),
        *variants,
        ("DeepRecon", "train_seg_latent", f"{n_var} variants", "G(w*) training slice: G forward",
         [Work(g_fwd, batch=64)], n_var * (train_slices + val_slices),
         f"{n_var} x {train_slices + val_slices:,} slices", seg_training),
        ("DeepRecon", "train_seg_latent", f"{n_var} variants", "slice-epoch: fwd+bwd (+ val fwd)", fit,
         n_var * dr["seg_epochs"] * train_slices, f"{n_var} x {dr['seg_epochs']} epochs x {train_slices:,}",
         seg_training),
        ("DeepRecon", "recon_latent", f"{n_var} variants", "fine slice: G fwd + Seg fwd",
         [Work(g_fwd, batch=64), Work(unet_fwd, batch=64)], n_var * c["fine"],
         f"{n_var} x {c['fine']} fine slices (k={c['k']})", every),
        ("DeepRecon", "recon_latent (held-out)", f"{n_var} variants", "fine slice: G fwd + Seg fwd",
         [Work(g_fwd, batch=64), Work(unet_fwd, batch=64)], n_var * c["heldout"],
         f"{n_var} x {c['heldout']} held-out slices", lab_tests),
        ("DeepRecon", "train_wplus_segnet", "W+SegNet", "code-epoch: fwd+bwd (+ val fwd)",
         [Work(wplus_train, batch=seg["batch_size"]),
          Work(wplus_fwd, calls=val_per_train, batch=seg["batch_size"])],
         dr["seg_epochs"] * train_slices, f"{dr['seg_epochs']} epochs x {train_slices:,} codes", seg_training),
        ("DeepRecon", "wplus_segnet_rows", "W+SegNet", "code: forward", [Work(wplus_fwd, batch=64)],
         c["ed_es"], f"{c['ed_es']} ED/ES codes", lab_tests),
        ("DeepRecon", "motion_adaptation", f"{inv_steps:,} steps", step,
         inversion, 2 * c["frames"] * c["slices"] * inv_steps,
         f"2 cines x {c['frames'] * c['slices']} slices x {inv_steps:,} steps", once("one subject pair")),
    ]
    for method in dm["methods"]:
        ddim, bs = dm["ddim_steps"], dm["inference_batch_size"]
        ddim_call = Work(denoiser_call, {"method": method}, calls=ddim, batch=bs)
        decode = [ddim_call, Work(unet_fwd, batch=bs)]  # then the U-Net on every decoded slice
        z_mor = " + z_mor" if method == "dmcvr" else ""
        out += [
            (method, "train_diffusion", method, f"image-step: E_sem{z_mor} + denoiser fwd+bwd",
             [Work(diffusion_step, {"method": method}, batch=dm["batch_size"], amp=True)],
             dm["steps"] * dm["batch_size"], f"{dm['steps']:,} steps x {dm['batch_size']}", pretraining),
            (method, "recon_diffusion (encode)", method, f"acquired slice: codes + {ddim} DDIM inversion steps",
             [Work(diffusion_codes, {"method": method}, batch=bs), ddim_call],
             c["ed_es"], f"{c['ed_es']} ED/ES slices", every),
            (method, "recon_diffusion (decode)", method, f"fine slice: {ddim} DDIM steps + Seg", decode,
             c["fine_unique"], f"{c['fine_unique']} distinct fine slices (k={c['k']})", every),
            (method, "recon_diffusion (held-out)", method, f"held-out slice: {ddim} DDIM steps + Seg", decode,
             c["heldout"], f"{c['heldout']} held-out slices", lab_tests),
        ]
    gemini_training = once("train + val subjects with 3D truth; synthetic cohort only")
    for method in gg["methods"]:
        out += [
            ("Gemini-GAN", "train_gemini", method,
             f"stack-step at {gg['crop']} px: fwd+bwd" + (" + D" if method == "gemini_gan" else ""),
             [Work(gemini_step, {"method": method}, batch=gg["batch_size"])],
             gg["steps"] * gg["batch_size"], f"{gg['steps']:,} steps x {gg['batch_size']}", gemini_training),
            ("Gemini-GAN", "recon_gemini (scores)", method, "ED or ES stack: forward",
             [Work(gemini_fwd, {"method": method})], 2, "ED + ES", (tests[0], tests[1] + " (synthetic only)")),
        ]
    vama = gg["vama"]
    out += [
        ("Gemini-GAN", "recon_gemini (volumes)", "gemini_gan", "ED or ES stack: forward",
         [Work(gemini_fwd, {"method": "gemini_gan"})], 2, "ED + ES",
         (lab_tests[0], lab_tests[1] + " (synthetic only)")),
        ("Gemini-GAN", "train_vama", "V-AMA", "slice-step: VAE + D fwd+bwd",
         [Work(vama_step, {"first": True}, calls=0.5, batch=vama["batch_size"]),
          Work(vama_step, {"first": False}, calls=0.5, batch=vama["batch_size"])],
         (vama["target_steps"] + vama["source_steps"]) * vama["batch_size"],
         f"{vama['target_steps'] + vama['source_steps']:,} steps x {vama['batch_size']}",
         once("only with a second site's subjects; synthetic cohort only")),
    ]
    mae_training = once(f"{c['lab_train'] + c['lab_val']:,} labelled train + val")
    for name, fn, stage, trained_on in (("pretrain", mae_pretrain_step, "train_mae", pretraining),
                                        ("phenotypes", mae_pheno_step, "finetune_mae", mae_training),
                                        ("segmentation", mae_seg_step, "finetune_mae", mae_training),
                                        ("resnet", resnet_step, "finetune_mae", mae_training)):
        s = mae[name]
        masked = f"{mae_config(mae).mask_ratio:.0%} masked, " if name == "pretrain" else ""
        unit = f"subject-step: {masked}fwd+bwd"
        out.append(("MAE", stage, name, unit, [Work(fn, batch=s["batch_size"])], s["steps"] * s["batch_size"],
                    f"{s['steps']:,} steps x {s['batch_size']}", trained_on))
    pairs = mae["robustness"]["pairs"]
    out += [
        ("MAE", "mae_evaluate", "MAE + ResNet", f"subject: ResNet + 2 x {len(PLANES) + pairs + 1} encoder passes",
         [Work(mae_eval)], 1, "1", tests),
        ("MAE", "mae_evaluate (segmentation)", "MAE", "subject: segmenter forward", [Work(mae_seg_fwd)], 1, "1",
         lab_tests),
    ]
    keys = ("family", "stage", "method", "unit", "work", "units", "units_text", "runs_on")
    return [dict(zip(keys, r)) for r in out]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=50_000, help="cohort size N")
    ap.add_argument("--labelled", type=int, default=1_000, help="subjects with manual labels (UK Biobank's set)")
    ap.add_argument("--splits", type=float, nargs=3, default=[0.7, 0.1, 0.2], metavar=("TRAIN", "VAL", "TEST"))
    ap.add_argument("--frames", type=int, default=50, help="cine frames per subject (UK Biobank: 50)")
    ap.add_argument("--slices", type=int, default=10,
                    help="SAX slices per subject (DeepRecon's 3,569,990 images of 6,846 subjects: 10.4 x 50 frames)")
    ap.add_argument("--slice-spacing-mm", type=float, default=10.0, help="UK Biobank: 8 mm slices, 2 mm gap")
    ap.add_argument("--tflops", type=float, default=100.0, help="assumed sustained TFLOP/s per GPU")
    ap.add_argument("--preset", type=Path, default=ROOT / "config/presets/paper.yaml")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                    help="override preset keys, e.g. deeprecon.inversion.steps=[0,1000] (a YAML value)")
    ap.add_argument("--device", choices=["cuda"], help="also time every unit on the GPU")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per unit (--device cuda)")
    args = ap.parse_args()
    p = yaml.safe_load(args.preset.read_text())
    for item in args.set:
        key, value = item.split("=", 1)
        *parents, leaf = key.split(".")
        section = p
        for name in parents:
            section = section.setdefault(name, {})
        section[leaf] = yaml.safe_load(value)
    c = cohort(args, p)
    timer = None
    if args.device == "cuda":
        if torch.cuda.is_available():
            timer = Timer(p, args.slice_spacing_mm, args.repeats)
        else:
            print("--device cuda: no GPU here, estimates only\n")

    count, table, started = Counter(p, args.slice_spacing_mm), [], time.perf_counter()
    for r in rows(p, c):
        flops = sum(w.calls * count(w) for w in r["work"])
        subjects, runs_on = r["runs_on"]
        row = {"family": FAMILY.get(r["family"], r["family"]), "kind": "training" if subjects == 1 else "per subject",
               "stage": r["stage"], "method": r["method"], "unit of work": r["unit"], "FLOPs per unit": flops,
               "units per subject (or per training)": r["units_text"], "runs on": runs_on,
               "precision": "bf16" if any(w.amp for w in r["work"]) else "fp32",
               "GPU-hours (estimate)": flops * r["units"] * subjects / (args.tflops * 1e12) / 3600}
        if timer is not None:
            try:
                seconds = sum(w.calls * timer(w) for w in r["work"])
            except torch.cuda.OutOfMemoryError:  # report the rest rather than nothing
                seconds = float("nan")
                torch.cuda.empty_cache()
            row["GPU-hours (measured)"] = seconds * r["units"] * subjects / 3600
            row["achieved TFLOP/s"] = flops / seconds / 1e12
        table.append(row)
    df = pd.DataFrame(table)
    hours = [col for col in df.columns if col.startswith("GPU-hours")]

    print(f"# GPU-hours of the `{args.preset.stem}` preset{' with ' + ', '.join(args.set) if args.set else ''} "
          f"for N = {c['N']:,} subjects\n")
    print(f"Per subject (UK Biobank): {c['frames']} frames x {c['slices']} SAX slices; ED+ES: {c['ed_es']} slices; "
          f"the fine grid at {p['recon']['target_spacing_mm']:g} mm from {args.slice_spacing_mm:g} mm spacing: "
          f"k = {c['k']}, {c['fine']} slices at ED+ES; {c['heldout']} held-out interior slices at ED+ES.")
    print(f"Subsets (rules/common.smk; splits {'/'.join(f'{x:g}' for x in args.splits)}): {c['N']:,} subjects, "
          f"{c['pretrain']:,} train+val (pre-training), {c['test']:,} test; {args.labelled:,} labelled: "
          f"{c['lab_train']:,} train, {c['lab_val']:,} val, {c['lab_test']:,} test.\n")
    shown = df.drop(columns=["family", "kind"])
    shown["FLOPs per unit"] = shown["FLOPs per unit"].map(lambda x: f"{x:.3g}")
    for col in hours:
        shown[col] = shown[col].map(hours_text)
    if timer is not None:
        shown["achieved TFLOP/s"] = shown["achieved TFLOP/s"].map(lambda x: f"{x:.1f}")
    total = {col: "" for col in shown.columns} | {"stage": "**total**"} | {h: hours_text(df[h].sum()) for h in hours}
    shown = pd.concat([shown, pd.DataFrame([total])], ignore_index=True)
    print(shown.to_markdown(index=False, disable_numparse=True))

    by = df.pivot_table(index="family", columns="kind", values=hours[0], aggfunc="sum", sort=False).fillna(0.0)
    by["total"] = by.sum(axis=1)
    by.loc["total"] = by.sum()
    print(f"\n{hours[0]} by family:\n")
    print(by.to_markdown(floatfmt=",.0f"))
    per_subject = df.loc[df["kind"] == "per subject", hours[0]].sum()
    training = df.loc[df["kind"] == "training", hours[0]].sum()
    print(f"\nTotal: {per_subject + training:,.0f} GPU-hours (estimate) = {per_subject:,.0f} that scale with N "
          f"({per_subject * 3600 / c['N']:,.0f} GPU-s per subject) + {training:,.0f} of trainings (fixed).")
    if timer is not None:
        print(f"Measured on {torch.cuda.get_device_name()}: {df[hours[1]].sum():,.0f} GPU-hours "
              f"(the sum over the rows timed; {args.repeats} calls per unit at the pipeline's batch).")
    print(f"\nAssumptions: {args.tflops:g} TFLOP/s sustained (bf16 on an H100/H200-class GPU at moderate "
          "utilisation) for every row, fp32 rows included (the pipeline runs them without autocast: slower in "
          "practice); FLOPs of matrix products, convolutions and attention only (FlopCounterMode, counted on "
          f"{' and '.join(sorted(set(count.where.values())))} at batch 1 and scaled linearly); no data loading, "
          "optimiser steps, EMA, checkpointing or idle GPU time; untrained weights (the cost does not depend on "
          "them). Inversion: one run of max(steps) per slice, the other variants' codes recorded on the way.")
    print(f"(counted in {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
