"""Gemini-GAN: throughput (training steps/s, inference volumes/s) and, with --curve, Table 2
rows against the 3D truth after each training budget.

Usage:
  python benchmarks/bench_gemini.py [--preset tiny] [--size 96] [--slices 16] [--batch 4] [--steps 10]
  python benchmarks/bench_gemini.py --curve 300 1000 [--subjects 10] [--lr 0.003] [--crop 64]

Throughput: one training step = a generator and a discriminator update on `batch` stacks
(the joint model: both decoders and the GAN); one inference volume = one phase of one
stack (`slices` acquired slices of size x size) to its thin-slice image and labels. Random
data (throughput does not depend on the weights), on the CPU and, where one is present,
the GPU.

--curve: `subjects` synthetic subjects (realistic phantom, 96 x 96 SAX matrix, 20 frames),
the first 60 % train Gemini-GAN on their ED/ES stacks and 3D truth for each budget, the
rest are scored (Dice, PSNR, SSIM), next to the nn and linear rows (the subjects' manual
labels reconstructed by nn / linear; the pipeline uses the segmentation network's).
"""

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from cinerecon.models.gemini_gan import GeminiConfig, GeminiGenerator
from cinerecon.superres import files as F
from cinerecon.superres.train import train_gemini
from cinerecon.synth.cohort import LabelPlan, generate_subject
from cinerecon.synth.scanner import AcquisitionConfig
from common import timed  # benchmarks/common.py


def throughput(args):
    config = getattr(GeminiConfig, args.preset)(in_slices=args.slices, z_factor=args.z_factor)
    gen = torch.Generator().manual_seed(0)
    n, d, s = 2 * args.batch, config.out_slices, args.size
    data = {"x": torch.rand(n, args.slices, s, s, generator=gen) * 2 - 1,
            "image": torch.rand(n, d, s, s, generator=gen) * 2 - 1,
            "labels": (torch.rand(n, d, s, s, generator=gen) * 4).to(torch.uint8),
            "mask": torch.ones(n, d, s, s, dtype=torch.bool)}
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        train_gemini(data, config, 1, args.batch, 1e-4, 1e-6, None, 0, device, log_every=10**9)  # warm-up
        seconds = timed(lambda: train_gemini(data, config, args.steps, args.batch, 1e-4, 1e-6, None, 0, device,
                                             log_every=10**9), device)
        G = GeminiGenerator(config).to(device).eval()
        x = data["x"][:1].to(device)
        with torch.no_grad():
            G(x)
            infer = timed(lambda: [G(x) for _ in range(args.volumes)], device)
        params = sum(p.numel() for p in G.parameters())
        print(f"{device}: {args.preset} Gemini-GAN ({params / 1e6:.2f}M generator parameters), {args.slices} slices "
              f"of {s}x{s} -> {d} thin slices: training {args.steps / seconds:.2f} steps/s (batch {args.batch}), "
              f"inference {args.volumes / infer:.2f} volumes/s", flush=True)


def curve(args):
    folder = Path(tempfile.mkdtemp(prefix="bench_gemini_"))
    acq = AcquisitionConfig.from_dict({"n_frames": 20, "sax_matrix": [96, 96], "lax_matrix": [48, 48]})
    subjects = {}
    for i in range(args.subjects):
        out = folder / f"S{i}"
        written = generate_subject(f"S{i}", 5, i, out, acq, LabelPlan(frames="ed_es"))
        subjects[f"S{i}"] = {"sa": written["sa"], "phenotypes": written["truth_phenotypes"],
                             "labels": written["label_sa"],
                             "truth": {k.removeprefix("truth_sr_"): v for k, v in written.items()
                                       if k.startswith("truth_sr_")}}
    names = list(subjects)
    n_train = max(1, round(0.6 * len(names)))
    settings = {"preset": args.preset, "in_slices": 16, "xy_factor": 1, "slice_mm": 2.0, "batch_size": args.batch,
                "lr": args.lr, "weight_decay": 1e-6, "crop": args.crop, "seed": 0, "model": {}}
    scored = {s: F.paired_stack(s, subjects[s], settings) for s in names[n_train:]}
    rows = [F.interpolation_rows(s, stack, truth, subjects[s]["labels"]) for s, (stack, truth) in scored.items()]
    for steps in args.curve:
        start = time.perf_counter()
        out = {"model": folder / f"gemini_{steps}.pt", "history": folder / f"history_{steps}.tsv"}
        F.train_gemini_files({s: subjects[s] for s in names[:n_train]}, {**settings, "steps": steps}, "gemini_gan",
                             out, "cpu")
        seconds = time.perf_counter() - start
        G = F.load_gemini(out["model"])
        rows += [F.network_rows(s, f"gemini_gan {steps} steps", F.predict(G, stack), truth)
                 for s, (stack, truth) in scored.items()]
        print(f"{steps} steps trained in {seconds:.0f} s", flush=True)
    table = pd.concat(rows).groupby(["method", "metric"], sort=False)["value"].mean().unstack()
    print(f"{n_train} training subjects, {len(scored)} scored (means over subjects and ED/ES):")
    print(table.round(3).to_string())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny", choices=["tiny", "paper"])
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--slices", type=int, default=16)
    ap.add_argument("--z-factor", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--volumes", type=int, default=16)
    ap.add_argument("--curve", type=int, nargs="*", help="training budgets (steps) to score against the truth")
    ap.add_argument("--subjects", type=int, default=10)
    ap.add_argument("--lr", type=float, default=3e-3, help="the demo's")
    ap.add_argument("--crop", type=int, default=64)
    args = ap.parse_args()
    if args.curve:
        torch.set_num_threads(1)
        curve(args)
    else:
        throughput(args)


if __name__ == "__main__":
    main()
