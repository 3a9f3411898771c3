"""Slice-misalignment correction accuracy and time per subject, per method.

Usage: python benchmarks/bench_align.py [--subjects 6] [--sax-rms 3] [--lax-rms 2.5]
Residual = estimated minus true per-slice shift over the slices that cut the heart,
after removing the common offset no method can see (mm RMS). Also reported: the
residual with each LAX view held out of the estimation, and on unshifted stacks.
"""

import argparse
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from cinerecon.align import estimate_shifts
from cinerecon.io.subject import VIEWS
from cinerecon.synth.scanner import AcquisitionConfig

from common import generated_and_cropped  # benchmarks/common.py

LAX = [v for v in VIEWS if v != "sa"]


def load(path):
    img = nib.load(path)
    return np.asanyarray(img.dataobj), img.affine


def residual(est, truth, heart):
    r = (est - truth)[heart]
    r -= r.mean(0)
    return float(np.sqrt((r**2).sum(1).mean()))


def cropped_subject(i, acq, tmp):
    files, crop, _ = generated_and_cropped(f"S{i}", 404, i, acq, tmp, (96, 96), (112, 112))
    sa, affine = load(crop / "sa.nii.gz")
    labels = load(crop / "label_sa.nii.gz")[0]
    truth = pd.read_csv(files["truth_shifts"], sep="\t").query("view == 'sa'")[["dx_mm", "dy_mm"]].to_numpy()
    return dict(sa=sa, affine=affine, labels=labels, truth=truth,
                laxes={v: load(crop / f"{v}.nii.gz") for v in LAX},
                lax_labels={v: load(crop / f"label_{v}.nii.gz")[0] for v in LAX},
                heart=(labels[..., 0] > 0).any(axis=(0, 1)))


def run(d, method, views):
    laxes = {v: d["laxes"][v] for v in views}
    start = time.perf_counter()
    est, _ = estimate_shifts(method, d["sa"], d["affine"], laxes, d["labels"],
                             {v: d["lax_labels"][v] for v in views})
    return residual(est, d["truth"], d["heart"]), time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--sax-rms", type=float, default=3.0)
    parser.add_argument("--lax-rms", type=float, default=2.5)
    parser.add_argument("--frames", type=int, default=30)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for shifted in (True, False):
            acq = AcquisitionConfig(n_frames=args.frames, sax_matrix=(160, 144), lax_matrix=(160, 160),
                                    sax_shift_rms_mm=args.sax_rms if shifted else 0.0,
                                    lax_shift_rms_mm=args.lax_rms if shifted else 0.0)
            for i in range(args.subjects):
                d = cropped_subject(i, acq, Path(tmp) / ("shifted" if shifted else "still"))
                none = residual(np.zeros_like(d["truth"]), d["truth"], d["heart"])
                rows.append(dict(stacks="shifted" if shifted else "unshifted", method="none",
                                 views="all", residual_mm=none, seconds=0.0))
                for method in ("intensity", "labels"):
                    r, t = run(d, method, LAX)
                    rows.append(dict(stacks=rows[-1]["stacks"], method=method, views="all",
                                     residual_mm=r, seconds=t))
                    if shifted:
                        for held in LAX:
                            r, t = run(d, method, [v for v in LAX if v != held])
                            rows.append(dict(stacks="shifted", method=method, views=f"without {held}",
                                             residual_mm=r, seconds=t))
    table = pd.DataFrame(rows)
    summary = table.groupby(["stacks", "method", "views"], sort=False).agg(
        residual_rms_mm=("residual_mm", lambda x: float(np.sqrt((x**2).mean()))),
        residual_max_mm=("residual_mm", "max"), seconds_per_subject=("seconds", "mean"))
    print(f"{args.subjects} subjects, SAX shifts {args.sax_rms} mm RMS, LAX shifts {args.lax_rms} mm RMS, "
          f"{args.frames} frames")
    print(summary.round(3).to_markdown())


if __name__ == "__main__":
    main()
