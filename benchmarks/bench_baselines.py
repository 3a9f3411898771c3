"""Time per subject per reconstruction method (CPD included) and print the cohort tables.

Usage: python benchmarks/bench_baselines.py [--subjects 6] [--frames 30]
Generates a synthetic cohort in a temporary folder, crops it, reconstructs ED/ES with
every baseline, evaluates LAX intersections and truth, and prints figures and tables.
"""

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from cinerecon.baselines import BASELINES
from cinerecon.baselines.files import reconstruct_subject
from cinerecon.evaluate import lax_rows, truth_metric_rows
from cinerecon.io.subject import VIEWS
from cinerecon.synth.scanner import AcquisitionConfig
from cinerecon.tables import lax_dice_table, truth_metrics_table

from common import generated_and_cropped  # benchmarks/common.py

LAX = [v for v in VIEWS if v != "sa"]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--frames", type=int, default=30)
    args = parser.parse_args()
    acq = AcquisitionConfig(n_frames=args.frames)
    timings = defaultdict(list)
    lax, truth = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.subjects):
            s = f"S{i:03d}"
            out = Path(tmp) / s
            files, crop, _ = generated_and_cropped(s, 2026, i, acq, tmp)
            for method in BASELINES:
                rec = {p: out / method / f"{p}.nii.gz" for p in ("ED", "ES")}
                t0 = time.perf_counter()
                reconstruct_subject(s, crop / "label_sa.nii.gz", method, 1.0, rec, out / method / "r.json")
                t1 = time.perf_counter()
                lax.append(lax_rows(s, method, rec, out / method / "r.json",
                                    {v: crop / f"label_{v}.nii.gz" for v in LAX}))
                t2 = time.perf_counter()
                truth.append(truth_metric_rows(s, method, rec, {"ED": files["truth_ed"], "ES": files["truth_es"]}))
                t3 = time.perf_counter()
                timings[(method, "recon ED+ES")].append(t1 - t0)
                timings[(method, "eval LAX")].append(t2 - t1)
                timings[(method, "eval truth")].append(t3 - t2)
    import pandas as pd

    print(f"subjects: {args.subjects} (UK Biobank geometry, crop 128x128, fine z 1 mm, labels not slice-aligned)")
    print("seconds per subject (mean / max):")
    for (method, step), values in timings.items():
        print(f"  {method:7s} {step:12s} {np.mean(values):7.3f} / {np.max(values):7.3f}")
    lax_all, truth_all = pd.concat(lax), pd.concat(truth)
    print("\nLAX-intersection Dice, LVC (mean (sd) over subjects and ED/ES):")
    print(lax_dice_table(lax_all, "LVC").to_markdown())
    print("\nAgainst the high-resolution truth:")
    print(truth_metrics_table(truth_all).to_markdown())


if __name__ == "__main__":
    main()
