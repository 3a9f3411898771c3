"""DeepRecon inversion throughput: slices x steps per second, batched versus a per-slice loop.

Usage: python benchmarks/bench_deeprecon.py [--slices 64] [--steps 20] [--size 96] [--preset tiny]
Uses an untrained generator/encoder of the preset (throughput does not depend on the
weights) and the tiny U-Net's features as perceptual distance, on the CPU and, where
one is present, on the GPU.
"""

import argparse

import torch

from cinerecon.latent.deeprecon import InversionSettings, invert_batch, roi_mask
from cinerecon.models.encoder import Encoder, EncoderConfig, FeatureDistance, unet_features
from cinerecon.models.stylegan2 import Generator, StyleGAN2Config
from cinerecon.models.unet import UNet, UNetConfig
from common import timed  # benchmarks/common.py


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--preset", default="tiny", choices=["tiny", "paper"])
    ap.add_argument("--loop-slices", type=int, default=8, help="slices timed in the per-slice loop")
    args = ap.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        torch.manual_seed(0)
        G = Generator(getattr(StyleGAN2Config, args.preset)(resolution=args.size)).to(device).eval()
        E = Encoder(getattr(EncoderConfig, args.preset)().matched_to(G.config), w_avg=G.mean_w(1000)).to(device).eval()
        perceptual = FeatureDistance(unet_features(UNet(UNetConfig.tiny()))).to(device)
        roi = roi_mask((args.size, args.size), (1.8, 1.8), 50.0, device)
        settings = InversionSettings(steps=(args.steps,))
        x = torch.rand(args.slices, 1, args.size, args.size, device=device) * 2 - 1
        invert_batch(x[:2], G, E, perceptual, roi, InversionSettings(steps=(2,)))  # warm-up
        batched = timed(lambda: invert_batch(x, G, E, perceptual, roi, settings), device)
        n_loop = min(args.loop_slices, args.slices)
        loop = timed(lambda: [invert_batch(x[i:i + 1], G, E, perceptual, roi, settings) for i in range(n_loop)], device)
        rate_b = args.slices * args.steps / batched
        rate_l = n_loop * args.steps / loop
        print(f"{device}: {args.preset} G at {args.size}px, {args.steps} steps: batched ({args.slices} slices) "
              f"{rate_b:.1f} slice-steps/s; per-slice loop {rate_l:.1f} slice-steps/s; speed-up {rate_b / rate_l:.1f}x",
              flush=True)


if __name__ == "__main__":
    main()
