"""The GPU check: what the pipeline's GPU code does per second on this machine, in one run.

Prints, at the paper presets (untrained weights: throughput does not depend on them):
1. DeepRecon inversion: slice-steps/s batched (all slices optimised together) vs a
   per-slice loop;
2. DMCVR: slices/s through DDIM inversion + decoding, batched vs a per-slice loop, at the
   published 256 px;
3. training steps/s of every trained model (SAX U-Net, StyleGAN2 G+D, W+ encoder, DMCVR
   denoiser + semantic encoder) with mixed precision off (fp32) and on (bf16; fp16 too
   where the model takes it), through the pipeline's own training functions;
4. peak GPU memory of each measurement.

Usage: python benchmarks/gpu_suite.py [--device cuda] [--quick]
(`benchmarks/gpu_suite.sh` runs it with a time limit.) `--quick` shrinks every model and
count to seconds on a CPU: a check that the script runs, not a measurement.
"""

import argparse
import time

import numpy as np
import torch

from cinerecon.latent.deeprecon import InversionSettings, invert_batch, roi_mask
from cinerecon.latent.dmcvr import decode_codes, diffusion_config, encode_slices
from cinerecon.models.diffusion import DiffAE, train_diffae
from cinerecon.models.encoder import Encoder, EncoderConfig, FeatureDistance, train_encoder, unet_features
from cinerecon.models.stylegan2 import Generator, StyleGAN2Config, train_stylegan2
from cinerecon.models.train_seg import train_unet
from cinerecon.models.unet import UNet, UNetConfig


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measured(fn, device):
    """(seconds, peak GPU MiB) of fn()."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    return seconds, peak


def row(what, value, unit, peak):
    print(f"{what:<52} {value:>10.2f} {unit:<16} peak {peak:>8.0f} MiB", flush=True)


def inversion(device, q):
    size = 32 if q else 128
    preset = "tiny" if q else "paper"
    torch.manual_seed(0)
    G = Generator(getattr(StyleGAN2Config, preset)(resolution=size)).to(device).eval()
    E = Encoder(getattr(EncoderConfig, preset)().matched_to(G.config), w_avg=G.mean_w(1000)).to(device).eval()
    perceptual = FeatureDistance(unet_features(UNet(UNetConfig.tiny()))).to(device)
    roi = roi_mask((size, size), (1.8, 1.8), 50.0, device)
    steps, n, n_loop = (2, 4, 2) if q else (20, 128, 8)
    settings = InversionSettings(steps=(steps,))
    x = torch.rand(n, 1, size, size, device=device) * 2 - 1
    invert_batch(x[:2], G, E, perceptual, roi, InversionSettings(steps=(1,)))  # warm-up
    s, peak = measured(lambda: invert_batch(x, G, E, perceptual, roi, settings), device)
    row(f"inversion {preset} {size}px, batch of {n}", n * steps / s, "slice-steps/s", peak)
    s, peak = measured(lambda: [invert_batch(x[i:i + 1], G, E, perceptual, roi, settings) for i in range(n_loop)],
                       device)
    row(f"inversion {preset} {size}px, per-slice loop", n_loop * steps / s, "slice-steps/s", peak)


def ddim(device, q):
    seg = UNet(UNetConfig.tiny()).to(device).eval()
    crop = 32 if q else 96
    settings = {"preset": "tiny" if q else "paper", "model": {"width": 8} if q else {}}
    model = DiffAE(diffusion_config(settings, crop, seg), seg_model=seg).to(device).eval()
    steps, n, n_loop = (2, 4, 2) if q else (10, 64, 4)
    images = np.random.default_rng(0).uniform(-1, 1, (n, 1, crop, crop)).astype(np.float32)

    def round_trip(batch, count):
        codes = encode_slices(model, images[:count], steps, batch, device)
        return decode_codes(model, codes, steps, batch, device)

    round_trip(2, 2)  # warm-up
    size = model.config.image_size
    s, peak = measured(lambda: round_trip(n, n), device)
    row(f"DMCVR {settings['preset']} {size}px DDIM {steps}+{steps}, batch of {n}", n / s, "slices/s", peak)
    s, peak = measured(lambda: [round_trip(1, 1) for _ in range(n_loop)], device)
    row(f"DMCVR {settings['preset']} {size}px DDIM {steps}+{steps}, per-slice", n_loop / s, "slices/s", peak)


def training(device, q):
    steps = 3 if q else 30
    rng = np.random.default_rng(0)

    def images(n, size):
        return rng.uniform(-1, 1, (n, 1, size, size)).astype(np.float32)

    seg_size, gan_size, crop = (32, 32, 32) if q else (128, 128, 96)
    preset = "tiny" if q else "paper"
    x_seg, y_seg = images(64, seg_size), rng.integers(0, 4, (64, seg_size, seg_size))
    torch.manual_seed(0)
    G0 = Generator(getattr(StyleGAN2Config, preset)(resolution=gan_size))
    seg = UNet(UNetConfig.tiny()).to(device).eval()
    dm_config = diffusion_config({"preset": preset, "model": {"width": 8} if q else {}}, crop, seg)
    x_dm = images(64, dm_config.image_size)

    models = {
        "U-Net": (["fp32", "bf16", "fp16"], lambda p, n: train_unet(
            x_seg, y_seg, x_seg[:16], y_seg[:16], getattr(UNetConfig, preset)(), epochs=max(1, n * 16 // 64),
            batch_size=16, device=device, precision=p, deterministic=False, augment=False),
         lambda n: max(1, n * 16 // 64) * 4),
        "StyleGAN2 G+D": (["fp32", "bf16"], lambda p, n: train_stylegan2(
            images(64, gan_size), getattr(StyleGAN2Config, preset)(resolution=gan_size), steps=n, batch_size=16,
            device=device, precision=p, deterministic=False, log_every=0), lambda n: n),
        "W+ encoder": (["fp32", "bf16", "fp16"], lambda p, n: train_encoder(
            G0, images(64, gan_size), getattr(EncoderConfig, preset)(), steps=n, batch_size=16, device=device,
            precision=p, deterministic=False, log_every=0), lambda n: n),
        f"DMCVR {dm_config.image_size}px": (["fp32", "bf16", "fp16"], lambda p, n: train_diffae(
            x_dm, dm_config, steps=n, batch_size=16, device=device, seg_model=seg, precision=p,
            deterministic=False, log_every=max(1, n)), lambda n: n),
    }
    for name, (precisions, train, count) in models.items():
        for p in precisions:
            train(p, 1)  # warm-up (cuDNN benchmark picks its algorithms)
            s, peak = measured(lambda: train(p, steps), device)
            row(f"train {name} ({preset}), {p}, batch 16", count(steps) / s, "steps/s", peak)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and counts: checks that the suite runs")
    args = ap.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# cinerecon GPU suite on {name}, torch {torch.__version__}{' (quick)' if args.quick else ''}")
    started = time.perf_counter()
    for part in (inversion, ddim, training):
        part(device, args.quick)
    print(f"# {time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
