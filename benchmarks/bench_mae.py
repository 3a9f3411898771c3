"""Whole-heart MAE throughput: pre-training steps/s and inference subjects/s.

Usage:
  python benchmarks/bench_mae.py [--preset tiny] [--size 48] [--frames 10] [--batch 4] [--steps 20]
  python benchmarks/bench_mae.py --preset paper --size 128 --frames 50 --batch 1 --steps 5

One pre-training step = an AdamW update of the MAE (encoder on the 30 % visible tokens,
decoder on all) on `batch` subjects of 9 planes x `frames` x `size` x `size`. Inference =
one subject's phenotypes (encoder on every token + head) and, separately, its
segmentation of all 9 planes and frames (encoder + UNETR-style decoder). Random data (the
cost does not depend on the values), on the CPU and, where one is present, the GPU.
"""

import argparse

import torch

from cinerecon.mae.model import MaeConfig, MaeSegmenter, PhenotypeRegressor, WholeHeartMAE
from common import timed  # benchmarks/common.py


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny", choices=["tiny", "paper"])
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--subjects", type=int, default=8, help="subjects per inference timing")
    args = ap.parse_args()
    config = getattr(MaeConfig, args.preset)(pixels=args.size, n_frames=args.frames)
    print(f"preset {args.preset}: {config.n_tokens} tokens per subject ({config.n_visible(config.n_tokens)} visible "
          f"in pre-training), dim {config.dim}, depth {config.depth}")
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(max(args.batch, args.subjects), 9, args.frames, args.size, args.size, generator=gen) * 2 - 1
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        torch.manual_seed(0)
        mae = WholeHeartMAE(config).to(device)
        opt = torch.optim.AdamW(mae.parameters(), lr=1e-4, weight_decay=0.05)
        batch, mask_gen = x[:args.batch].to(device), torch.Generator().manual_seed(0)

        def steps(n):
            for _ in range(n):
                loss = mae.loss(batch, mask_gen)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        steps(2)  # warm-up
        seconds = timed(lambda: steps(args.steps), device)
        print(f"{device}: pre-training {args.steps / seconds:.2f} steps/s at batch {args.batch} "
              f"({args.steps * args.batch / seconds:.1f} subjects/s)")
        regressor, segmenter = PhenotypeRegressor(config).to(device).eval(), MaeSegmenter(config).to(device).eval()
        subjects = x[:args.subjects].to(device)
        for name, model in (("phenotypes", regressor), ("segmentation", segmenter)):
            with torch.no_grad():
                model(subjects[:1])  # warm-up
                seconds = timed(lambda: [model(subjects[i:i + 1]) for i in range(args.subjects)], device)
            print(f"{device}: inference ({name}) {args.subjects / seconds:.1f} subjects/s, one at a time")


if __name__ == "__main__":
    main()
