"""Calibrate the synthetic phantom against the papers' real-data LAX Dice of the baselines.

Usage: python benchmarks/bench_phantom.py [--subjects 8] [--variants smooth realistic ...]
       [--out results_phantom] [--cores 2] [--timing-subjects 2]

On real UK Biobank data the papers report LAX Dice LVC of 0.780 (nearest neighbour), 0.781
(linear) and 0.790 (CPD) for the baselines (DeepRecon, Table 2), over the whole LAX label.
Per variant this runs the real pipeline (`snakemake`, demo geometry: the demo preset's
acquisition and crops) on a cohort of --subjects test subjects, all labelled with LV/RV on
their LAX views, with only the baselines nn, linear and CPD, and prints their LAX Dice LVC
in both protocols (`whole`: the papers', `covered`: masked to what the SAX stack covers)
and their Dice LVC against the 3D truth. A variant is the realistic phantom (the default),
the smooth phantom of the first wave, or the realistic one with one group of knobs turned
off, which names what each group moves. Writes <out>/calibration.{csv,md} and
<out>/phantom_views.png (one subject in both phantoms: SAX and LAX at ED and ES, with the
manual label contours).

It also times generating one subject at UK Biobank geometry (cinerecon.synth defaults) for
the smooth and the realistic phantom, with UK Biobank-shaped and with dense labels, over
--timing-subjects subjects.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = {"nn": 0.780, "linear": 0.781, "cpd": 0.790}  # DeepRecon Table 2, UK Biobank

# acquisition overrides per variant (cohort.synthetic.acquisition)
VARIANTS = {
    "smooth": {"phantom": "smooth"},
    "realistic": {},
    "no_base_tilt": {"base_tilt_deg_range": [0.0, 0.0], "tricuspid_offset_mm_range": [0.0, 0.0]},
    "no_shape_variation": {"apex_power_range": [2.0, 2.0], "wall_ratio_range": [0.0, 0.0]},
    "no_through_plane": {"sax_through_plane_rms_mm": 0.0, "lax_through_plane_rms_mm": 0.0,
                         "rotation_rms_deg": 0.0},
    "no_muscles": {"papillary_radius_mm_range": [0.0, 0.0], "trabeculation": 0.0},
    "no_image_detail": {"tissue_texture": 0.0, "flow_variation": 0.0, "banding_depth": 0.0},
    "full_coverage": {"sax_first_slice_above_base_mm_range": [4.0, 14.0],
                      "sax_last_slice_past_apex_mm_range": [0.0, 6.0]},
    "no_annotation_noise": {"annotation_sd_mm": 0.0},
    "same_protocol": {"lax_muscles_as_myocardium": False},
}


def variant_config(name: str, args) -> dict:
    n = args.subjects
    return {
        "results": str(args.out / name / "results"),
        "cohort": {"synthetic": {
            "n_subjects": n, "splits": {"train": 0.0, "val": 0.0, "test": 1.0},
            "labels": {"fraction": 1.0, "lax_full_test_subjects": n},
            "acquisition": VARIANTS[name]}},
        "segmentation": {"enabled": False}, "deeprecon": {"enabled": False}, "dmcvr": {"enabled": False},
        "cohort_phenotypes": {"recon_methods": []},
        "recon": {"baselines": ["nn", "linear", "cpd"]},
        "batch": {"subjects_per_shard": max(1, (n + args.cores - 1) // args.cores)},
    }


def run_variant(name: str, args) -> pd.DataFrame:
    folder = args.out / name
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(variant_config(name, args), sort_keys=False))
    start = time.perf_counter()
    subprocess.run(["snakemake", "--cores", str(args.cores), "--configfile", str(config), "-q"],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    tables = folder / "results" / "tables"
    lax = pd.read_csv(tables / "lax_dice_numeric.csv")
    truth = pd.read_csv(tables / "truth_metrics_numeric.csv")
    truth = truth[(truth.structure == "LVC") & (truth.metric == "dice")].set_index("method")["mean"]
    rows = []
    for method in PUBLISHED:
        mine = lax[lax["method"] == method].set_index("protocol")["average_mean"]
        rows.append({"variant": name, "method": method, "lax_dice_whole": mine.get("whole"),
                     "lax_dice_covered": mine.get("covered"), "published": PUBLISHED[method],
                     "truth_dice": truth.get(method), "seconds": round(seconds)})
    return pd.DataFrame(rows)


def generation_seconds(phantom: str, labels: str, n: int, out: Path) -> float:
    """Seconds per subject to generate at UK Biobank geometry; labels `ukbb` (ED/ES SAX,
    atria-only LAX: a pipeline run's shape) or `dense` (every frame, every structure: the
    shape bench_synth_crop.py times)."""
    from cinerecon.labels import lax_conventions
    from cinerecon.synth.cohort import LabelPlan, generate_subject
    from cinerecon.synth.scanner import AcquisitionConfig

    acq = AcquisitionConfig.from_dict({"phantom": phantom})
    plan = LabelPlan("ed_es", lax_conventions("ukbb")) if labels == "ukbb" else LabelPlan()
    start = time.perf_counter()
    for i in range(n):
        generate_subject(f"SYN{i:04d}", 2026, i, out / "timing" / phantom / labels / f"SYN{i:04d}", acq, plan)
    return (time.perf_counter() - start) / n


def views_figure(out: Path, subject_index: int = 1) -> Path:
    """One subject at demo geometry in both phantoms: basal and mid SAX slices and the 4ch
    and 2ch views at ED and ES, with their manual label contours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nibabel as nib
    import numpy as np

    from cinerecon.labels import lax_conventions
    from cinerecon.synth.cohort import LabelPlan, generate_subject
    from cinerecon.synth.scanner import AcquisitionConfig

    demo = yaml.safe_load((REPO / "config/presets/demo.yaml").read_text())["cohort"]["synthetic"]["acquisition"]
    fig, axes = plt.subplots(2, 8, figsize=(24, 6.6))
    for row, phantom in enumerate(("smooth", "realistic")):
        folder = out / "views" / phantom
        files = generate_subject("SYN0001", 2026, subject_index, folder, AcquisitionConfig.from_dict(
            {**demo, "phantom": phantom}), LabelPlan("ed_es", lax_conventions("full")))
        es = int(json.loads(Path(files["truth_phenotypes"]).read_text())["es_frame"])
        sa, label_sa = nib.load(files["sa"]).get_fdata(), np.asanyarray(nib.load(files["label_sa"]).dataobj)
        with_heart = np.flatnonzero(label_sa[..., 0].any(axis=(0, 1)))
        panels = [("SAX base", sa[:, :, with_heart[0]], label_sa[:, :, with_heart[0]]),
                  ("SAX mid", sa[:, :, with_heart[len(with_heart) // 2]], label_sa[:, :, with_heart[len(with_heart) // 2]])]
        for view in ("4ch", "2ch"):
            panels.append((view, nib.load(files[f"la_{view}"]).get_fdata()[:, :, 0],
                           np.asanyarray(nib.load(files[f"label_la_{view}"]).dataobj)[:, :, 0]))
        column = 0
        for title, image, labels in panels:
            for name, frame in (("ED", 0), ("ES", es)):
                ax = axes[row, column]
                idx = np.argwhere((labels[..., 0] > 0) | (labels[..., es] > 0))
                lo, hi = np.maximum(idx.min(0) - 12, 0), idx.max(0) + 12
                ax.imshow(image[lo[0]:hi[0], lo[1]:hi[1], frame].T, cmap="gray", origin="lower")
                ax.contour(labels[lo[0]:hi[0], lo[1]:hi[1], frame].T, levels=[0.5, 1.5, 2.5, 3.5],
                           colors=["orange", "red", "lime", "cyan"], linewidths=0.8, origin="lower")
                ax.set_title(f"{phantom}: {title} {name}", fontsize=9)
                ax.axis("off")
                column += 1
    fig.tight_layout()
    path = out / "phantom_views.png"
    fig.savefig(path, dpi=80)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=8)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS),
                    help="none: only the timing (and the figure)")
    ap.add_argument("--out", type=Path, default=REPO / "results_phantom")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--timing-subjects", type=int, default=2)
    ap.add_argument("--no-figure", action="store_true", help="skip <out>/phantom_views.png")
    args = ap.parse_args()
    args.out = args.out.resolve()

    if not args.no_figure:
        print(f"sample views: {views_figure(args.out)}", flush=True)
    if args.timing_subjects:
        for labels in ("ukbb", "dense"):
            for phantom in ("smooth", "realistic"):
                per = generation_seconds(phantom, labels, args.timing_subjects, args.out)
                print(f"generation, UK Biobank geometry, {labels} labels, {phantom}: {per:.1f} s per subject",
                      flush=True)
    table = []
    for name in args.variants:
        table.append(run_variant(name, args))
        print(table[-1].to_string(index=False), flush=True)
    if not table:
        return
    table = pd.concat(table, ignore_index=True)
    table.to_csv(args.out / "calibration.csv", index=False)
    (args.out / "calibration.md").write_text(table.round(3).to_markdown(index=False) + "\n")
    print(table.round(3).to_markdown(index=False))


if __name__ == "__main__":
    sys.exit(main())
