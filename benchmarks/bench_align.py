"""Slice-misalignment correction across acquisitions and hearts unlike the demo's.

Usage: python benchmarks/bench_align.py [--subjects 6] [--conditions demo,ukbb,...] [--jobs 2]
                                        [--slices-csv per_slice.csv]

Each condition is a synthetic cohort with one knob moved (matrix, pixel size, frame
count, slice count, heart shape, noise, LAX-view shifts) from the smooth phantom, or the
realistic phantom (through-plane shifts and rotations that no in-plane shift undoes; its
truth is the LV axis's in-plane move per slice). Residual = estimated minus true
per-slice shift over the slices that cut the heart (LV or RV labelled at ED), after
removing the common offset no method can see; RMS in mm, also per slice position (the
heart's slices in thirds: basal, mid, apical). Also printed: the residual with each LAX
view held out (`--held-out`), the label-based estimator (`--labels`), the RMS of
actual over expected error (`sd calibration`: RMS of error / (sqrt(2) sd_mm), 1 when
the per-slice sd_mm is right, below 1 when it is cautious),
and unshifted stacks (left as acquired?). The estimator is told each condition's SAX slice
thickness, as `align.sax_thickness_mm` tells it in a run.
"""

import argparse
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from cinerecon.align import estimate_shifts
from cinerecon.align.estimate import AlignSettings
from cinerecon.io.subject import VIEWS
from cinerecon.synth.scanner import AcquisitionConfig

from common import generated_and_cropped  # benchmarks/common.py

LAX = [v for v in VIEWS if v != "sa"]
# The smooth phantom (in-plane shifts only: the truth is exactly recoverable), as the
# recorded residuals were measured; "realistic" adds through-plane and rotational motion.
BASE = AcquisitionConfig.from_dict(dict(phantom="smooth", n_frames=30, sax_matrix=(160, 144),
                                        lax_matrix=(160, 160), sax_shift_rms_mm=3.0, lax_shift_rms_mm=2.5))
CONDITIONS = {
    "demo": BASE,
    "ukbb": replace(BASE, n_frames=25, sax_matrix=(208, 192), lax_matrix=(208, 192),
                    sax_shift_rms_mm=2.5, lax_shift_rms_mm=1.0),
    "12 frames": replace(BASE, n_frames=12),
    "8 mm slices": replace(BASE, sax_spacing_mm=8.0, sax_thickness_mm=6.0),
    "1.4 mm pixels": replace(BASE, pixel_mm=1.4, sax_matrix=(200, 180), lax_matrix=(200, 200)),
    "round thin-walled": replace(BASE, lv_aspect_range=(2.0, 2.5), wall_range=(4.0, 7.0)),
    "long large": replace(BASE, lv_aspect_range=(3.5, 4.2), lv_edv_range=(180.0, 260.0)),
    "noisy": replace(BASE, noise_sigma=0.08, bias_strength=0.3),
    "LAX 4 mm": replace(BASE, lax_shift_rms_mm=4.0),
    "unshifted": replace(BASE, sax_shift_rms_mm=0.0, lax_shift_rms_mm=0.0),
    "realistic phantom": AcquisitionConfig(n_frames=30, sax_matrix=(160, 144), lax_matrix=(160, 160),
                                           sax_shift_rms_mm=3.0, lax_shift_rms_mm=2.5),
}


def load(path):
    img = nib.load(path)
    return np.asanyarray(img.dataobj), img.affine


def cropped_subject(name, i, acq, tmp):
    files, crop, _ = generated_and_cropped(f"S{i}", 404, i, acq, Path(tmp) / name, (96, 96), (112, 112))
    sa, affine = load(crop / "sa.nii.gz")
    labels = load(crop / "label_sa.nii.gz")[0]
    truth = pd.read_csv(files["truth_shifts"], sep="\t").query("view == 'sa'")[["dx_mm", "dy_mm"]].to_numpy()
    return dict(sa=sa, affine=affine, labels=labels, truth=truth,
                laxes={v: load(crop / f"{v}.nii.gz") for v in LAX},
                lax_labels={v: load(crop / f"label_{v}.nii.gz")[0] for v in LAX},
                heart=(labels[..., 0] > 0).any(axis=(0, 1)))


def positions(heart: np.ndarray) -> dict:
    """Heart slices in thirds from the base (slice 0 is basal)."""
    idx = np.flatnonzero(heart)
    return {k: ("basal", "mid", "apical")[min(3 * j // len(idx), 2)] for j, k in enumerate(idx)}


def slice_errors(est, truth, heart) -> np.ndarray:
    r = est - truth
    r = r - r[heart].mean(0)
    return np.sqrt((r**2).sum(1))


def subject_rows(job):
    name, i, acq, tmp, held_out, labels = job
    d = cropped_subject(name, i, acq, tmp)
    pos = positions(d["heart"])
    runs = [("none", "all", None)] + [("intensity", "all", LAX)]
    if labels:
        runs.append(("labels", "all", LAX))
    if held_out:
        runs += [("intensity", f"without {v}", [u for u in LAX if u != v]) for v in LAX]
    rows = []
    for method, views, use in runs:
        start = time.perf_counter()
        if method == "none":
            est, sd, conf, seconds = np.zeros_like(d["truth"]), np.full(len(d["truth"]), np.nan), ["none"] * len(d["truth"]), 0.0
        else:
            res = estimate_shifts(method, d["sa"], d["affine"], {v: d["laxes"][v] for v in use}, d["labels"],
                                  {v: d["lax_labels"][v] for v in use},
                                  AlignSettings(sax_thickness_mm=acq.sax_thickness_mm))  # as configured
            est, sd, conf, seconds = res.shifts, res.sd_mm, res.confidence, time.perf_counter() - start
        err = slice_errors(est, d["truth"], d["heart"])
        for k, where in pos.items():
            rows.append(dict(condition=name, subject=i, method=method, views=views, slice=k, position=where,
                             area_px=int((d["labels"][:, :, k, 0] > 0).sum()), error_mm=err[k], sd_mm=sd[k],
                             confidence=conf[k], moved=bool(np.any(est[k] != 0)), seconds=seconds))
    return rows


def rms(x):
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--held-out", default="demo,ukbb", help="conditions also run with each LAX view held out")
    parser.add_argument("--labels", default="demo", help="conditions also run with the label-based estimator")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--slices-csv", help="write every slice's row here")
    args = parser.parse_args()
    names = args.conditions.split(",")
    held, with_labels = set(args.held_out.split(",")), set(args.labels.split(","))
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(args.jobs) as pool:
        jobs = [(n, i, CONDITIONS[n], tmp, n in held and n != "unshifted", n in with_labels)
                for n in names for i in range(args.subjects)]
        table = pd.DataFrame([row for rows in pool.map(subject_rows, jobs) for row in rows])
    if args.slices_csv:
        table.to_csv(args.slices_csv, index=False)
    print(f"{args.subjects} subjects per condition; residual over heart slices, mm RMS")
    shifted = table[table.condition != "unshifted"]
    summary = []
    for (name, method, views), g in shifted.groupby(["condition", "method", "views"], sort=False):
        per_subject = g.groupby("subject").error_mm.apply(rms)
        # error_mm is a 2D length, sd_mm a per-axis sd: sqrt(2) sd is its expected RMS
        z = (g.error_mm / (np.sqrt(2) * g.sd_mm)).dropna()
        summary.append({"condition": name, "method": method, "views": views, "overall": rms(g.error_mm),
                        **{p: rms(g.error_mm[g.position == p]) for p in ("basal", "mid", "apical")},
                        "worst subject": per_subject.max(), "sd calibration": rms(z) if len(z) else np.nan,
                        "low/prior slices": int(g.confidence.isin(["low", "prior"]).sum()),
                        "s/subject": g.groupby("subject").seconds.first().mean()})
    summary = pd.DataFrame(summary)
    print(summary.round(3).to_markdown(index=False))
    main_rows = shifted[(shifted.method == "intensity") & (shifted.views == "all")]
    print("\nintensity, all views, every shifted condition: "
          + ", ".join(f"{p} {rms(main_rows.error_mm[main_rows.position == p]):.3f}" for p in ("basal", "mid", "apical"))
          + f", overall {rms(main_rows.error_mm):.3f} mm RMS")
    still = table[(table.condition == "unshifted") & (table.method != "none")]
    if len(still):
        print(f"unshifted stacks: {still.groupby(['subject', 'method']).moved.any().mean():.0%} moved, "
              f"residual {rms(still.error_mm):.3f} mm RMS")


if __name__ == "__main__":
    main()
