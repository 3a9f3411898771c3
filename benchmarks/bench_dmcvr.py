"""DMCVR encoding + decoding throughput: slices per second, batched versus a per-slice loop.

Usage: python benchmarks/bench_dmcvr.py [--slices 64] [--steps 10] [--size 96] [--preset tiny] [--width W]
One slice = z_sem + z_mor + DDIM inversion (x_0 -> x_T) + DDIM decoding (x_T -> x_0), as
cinerecon.latent.dmcvr runs it for the acquired slices (the interpolated ones only decode).
Untrained model of the preset (throughput does not depend on the weights), with the tiny
U-Net giving z_mor, on the CPU and, where one is present, on the GPU.
"""

import argparse

import numpy as np
import torch

from cinerecon.latent.dmcvr import decode_codes, diffusion_config, encode_slices
from cinerecon.models.diffusion import DiffAE
from cinerecon.models.unet import UNet, UNetConfig
from common import timed  # benchmarks/common.py


def round_trip(model, images, steps, batch, device):
    return decode_codes(model, encode_slices(model, images, steps, batch, device), steps, batch, device)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10, help="DDIM steps of inversion and of decoding")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--preset", default="tiny", choices=["tiny", "paper"])
    ap.add_argument("--width", type=int, default=None, help="override the preset's width")
    ap.add_argument("--batch", type=int, default=64, help="slices per network call when batched")
    ap.add_argument("--loop-slices", type=int, default=4, help="slices timed in the per-slice loop")
    args = ap.parse_args()
    settings = {"preset": args.preset, "model": {} if args.width is None else {"width": args.width}}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    images = np.random.default_rng(0).uniform(-1, 1, (args.slices, 1, args.size, args.size)).astype(np.float32)
    for device in devices:
        torch.manual_seed(0)
        seg = UNet(UNetConfig.tiny() if args.preset == "tiny" else UNetConfig.paper()).to(device).eval()
        model = DiffAE(diffusion_config(settings, args.size, seg), seg_model=seg).to(device).eval()
        round_trip(model, images[:2], 2, 2, device)  # warm-up
        batched = timed(lambda: round_trip(model, images, args.steps, args.batch, device), device)
        n_loop = min(args.loop_slices, args.slices)
        loop = timed(lambda: [round_trip(model, images[i:i + 1], args.steps, 1, device) for i in range(n_loop)],
                     device)
        rate_b, rate_l = args.slices / batched, n_loop / loop
        print(f"{device}: {args.preset} denoiser (width {model.config.width}) at {args.size}px, {args.steps}+"
              f"{args.steps} DDIM steps: batched ({args.slices} slices) {rate_b:.2f} slices/s; per-slice loop "
              f"{rate_l:.2f} slices/s; speed-up {rate_b / rate_l:.1f}x", flush=True)


if __name__ == "__main__":
    main()
