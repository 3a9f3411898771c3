"""Segmentation U-Net: training time per epoch and inference throughput (slices/s).

Usage: python benchmarks/bench_seg.py [--slices 480] [--size 96] [--model tiny]
Runs on CPU, and on the GPU too when one is available.
"""

import argparse
import time

import numpy as np
import torch

from cinerecon.models.train_seg import predict_slices, train_unet
from cinerecon.models.unet import UNet, UNetConfig


def fake_data(n, size, seed=0):
    """Bright discs in darker rings on noise: enough structure for the loss to move."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = rng.normal(-0.6, 0.1, (n, 1, size, size)).astype(np.float32)
    labels = np.zeros((n, size, size), np.int64)
    for i in range(n):
        cx, cy = rng.uniform(0.35, 0.65, 2) * size
        r = rng.uniform(0.08, 0.15) * size
        d = np.hypot(xx - cx, yy - cy)
        labels[i][d <= r + 4] = 2
        labels[i][d <= r] = 1
        images[i, 0][labels[i] == 1] += 1.3
        images[i, 0][labels[i] == 2] += 0.4
    return images, labels


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=480)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--model", default="tiny", choices=["tiny", "paper"])
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    config = getattr(UNetConfig, args.model)()
    x, y = fake_data(args.slices, args.size)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"model {args.model}, {args.slices} slices of {args.size}x{args.size}, torch threads {torch.get_num_threads()}")
    for device in devices:
        start = time.perf_counter()
        model, history = train_unet(x, y, x[:64], y[:64], config, epochs=args.epochs, batch_size=16,
                                    seed=0, device=device)
        per_epoch = (time.perf_counter() - start) / args.epochs
        model = UNet(config).to(device).eval()
        predict_slices(model, x[:32], 64, device)  # warm-up
        for batch in (1, 64):
            start = time.perf_counter()
            predict_slices(model, x, batch, device)
            rate = len(x) / (time.perf_counter() - start)
            print(f"{device:5s} batch {batch:3d}: inference {rate:8.1f} slices/s")
        print(f"{device:5s} training: {per_epoch:.2f} s/epoch ({args.slices / per_epoch:.0f} slices/s)")


if __name__ == "__main__":
    main()
