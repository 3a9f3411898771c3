"""Whole-heart MAE throughput: pre-training steps/s and inference subjects/s.

Usage:
  python benchmarks/bench_mae.py [--preset tiny] [--size 48] [--frames 10] [--batch 4] [--steps 20]
  python benchmarks/bench_mae.py --preset paper --size 128 --frames 50 --batch 1 --steps 5
  python benchmarks/bench_mae.py --curve 0 300 1500 [--subjects 24] [--finetune-steps 300]

One pre-training step = an AdamW update of the MAE (encoder on the 30 % visible tokens,
decoder on all) on `batch` subjects of 9 planes x `frames` x `size` x `size`. Inference =
one subject's phenotypes (encoder on every token + head) and, separately, its
segmentation of all 9 planes and frames (encoder + UNETR-style decoder). Random data (the
cost does not depend on the values), on the CPU and, where one is present, the GPU.

--curve: `subjects` synthetic subjects (realistic phantom, 20 frames, UK Biobank-shaped labels
at ED and ES, atria-only LAX labels), their raw views centre-cropped (no pipeline crop or
alignment); the first two thirds pre-train the MAE for each budget of steps (0: no
pre-training, the encoder fine-tuned from its random start) and fine-tune the phenotype
head, and train the ResNet; the last third is scored against the truth (Table 1 rows).
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cinerecon.mae.model import MaeConfig, MaeSegmenter, PhenotypeRegressor, WholeHeartMAE
from common import timed  # benchmarks/common.py


def curve(args):
    from cinerecon.mae import files as F
    from cinerecon.mae.data import targets_from, write_subject
    from cinerecon.mae.inputs import InputSettings, build_inputs
    from cinerecon.mae.tables import phenotype_table
    from cinerecon.labels import lax_conventions, lax_structures
    from cinerecon.synth.cohort import LabelPlan, generate_subject
    from cinerecon.synth.scanner import AcquisitionConfig

    settings = {"preset": "tiny", "model": {}, "size": 96, "downsample": 2, "n_frames": 10, "seed": 0,
                "pretrain": {"batch_size": 4, "lr": 1e-3, "weight_decay": 0.05},
                "phenotypes": {"steps": args.finetune_steps, "batch_size": 4, "lr": 1e-3, "weight_decay": 0.05},
                "resnet": {"steps": args.finetune_steps, "batch_size": 4, "lr": 1e-3, "weight_decay": 0.05,
                           "width": 16, "blocks": [1, 1, 1, 1]}}
    acq = AcquisitionConfig.from_dict({"n_frames": 20})
    plan = LabelPlan(frames="ed_es", lax=lax_conventions("full"))  # pipeline values; the ukbb views kept below
    structures = {f"la_{v}": lax_structures("ukbb", v) for v in ("2ch", "3ch", "4ch")}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for i in range(args.subjects):
            s = f"SYN{i:04d}"
            w = generate_subject(s, 2026, i, Path(tmp) / s, acq, plan)
            files = {"sa": w["sa"], "base_labels": w["label_sa"], "label_sa": w["label_sa"],
                     **{v: w[v] for v in structures}, **{f"label_{v}": w[f"label_{v}"] for v in structures}}
            paths[s] = Path(tmp) / f"{s}.npz"
            write_subject(paths[s], build_inputs(s, files, InputSettings.from_dict(settings), structures),
                          *targets_from(w["truth_phenotypes"]))
        subjects = list(paths)
        n_train = 2 * len(subjects) // 3
        train, test = {s: paths[s] for s in subjects[:n_train]}, subjects[n_train:]
        print(f"{len(train)} training subjects, {len(test)} scored; fine-tuning {args.finetune_steps} steps")
        F.train_resnet_files(train, settings, {"model": Path(tmp) / "r.pt", "history": Path(tmp) / "r.tsv"}, "cpu")
        resnet = F.load_regressor(Path(tmp) / "r.pt", "resnet")
        rows = []
        for steps in args.curve:
            pre = {"model": Path(tmp) / f"m{steps}.pt", "history": Path(tmp) / f"m{steps}.tsv"}
            # 0: no pre-training, the encoder as initialised (one step at lr 1e-12 changes nothing)
            budget = {"steps": steps, "lr": 1e-3} if steps else {"steps": 1, "lr": 1e-12}
            F.pretrain_files(train, {**settings, "pretrain": {**settings["pretrain"], **budget}}, pre, "cpu")
            tuned = {"model": Path(tmp) / f"p{steps}.pt", "history": Path(tmp) / f"p{steps}.tsv"}
            F.finetune_phenotypes_files(train, pre["model"], settings, tuned, "cpu")
            model = F.load_regressor(tuned["model"], "phenotypes")
            for s in test:
                arrays = np.load(paths[s])
                image = torch.from_numpy(arrays["image"][None].astype(np.float32))
                predictions = {f"mae ({steps} pre-training steps)": model.predict(image)[0]}
                if steps == args.curve[0]:
                    predictions.update({"mean_guess": model.mean, "resnet": resnet.predict(image)[0]})
                rows.append(F.phenotype_rows(s, {k: arrays[k] for k in arrays.files}, predictions))
        rows = pd.concat(rows, ignore_index=True)
        table = []
        for method in dict.fromkeys(rows["method"]):
            mine = phenotype_table(rows[rows["method"] == method].assign(method="mae"))
            table.append(mine.assign(method=method))
        print(pd.concat(table, ignore_index=True).to_string(index=False))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny", choices=["tiny", "paper"])
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--subjects", type=int, default=None, help="subjects per inference timing (8) / in the curve (24)")
    ap.add_argument("--curve", type=int, nargs="+", help="pre-training budgets (steps) to compare")
    ap.add_argument("--finetune-steps", type=int, default=300)
    args = ap.parse_args()
    if args.curve:
        args.subjects = args.subjects or 24
        return curve(args)
    args.subjects = args.subjects or 8
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
