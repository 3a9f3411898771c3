"""CPU seconds per subject on the pipeline's CPU path at UK Biobank geometry (issue #23).

Usage: python benchmarks/bench_cpu_path.py [--subjects 4] [--frames 50] [--plain]
                                           [--labelled-test-fraction 0.004]
                                           [--profile STEP] [--top 25] [--results DIR] [--baseline REV]

Generates --subjects synthetic subjects with the generator's defaults (UK Biobank geometry:
SAX 208 x 180 px of 1.83 mm, 8 mm slices every 10 mm, 2ch/3ch/4ch LAX, 50 frames; labels
as UK Biobank has them: SAX at ED and ES, LAX atria only) and writes them as UK Biobank
DICOM zips: by default with the demo_dicom quirks (mixed series, RLE, a duplicated slice,
shuffled names); with --plain uncompressed, one series per view. Then runs each
per-subject CPU step the way its shard job runs it (the pieces of the `run` functions of
cinerecon.stages and cinerecon.cohort.stages, in a results folder laid out by
cinerecon.layout, on one thread as `threads: 1` gives them) and prints CPU seconds
(time.process_time) and wall seconds per subject per step. Not timed: generation and
DICOM writing (no part of a real run), and the shard bookkeeping of cinerecon.batch.

What a real UK Biobank cohort runs, and so the figures printed:
(a) every subject: ingest, crop and align of the images, the seg record and the four
    cohort baselines (nn, linear, sdf, cpd) from the segmentation with their phenotypes.
    This is the headline against the budget (10 CPU-s per subject).
(b) a labelled test subject (EVAL_SUBJECTS, a small minority) also: its labels through
    ingest, crop and align, the four baselines from the manual labels, their evaluation
    and the reference phenotypes, without truth (real data has none: the workflow runs
    evaluate/reference_phenotypes with truth=HAS_TRUTH, false for UK Biobank).
(c) synthetic cohorts only: the truth metrics and truth phenotypes (apart).
(d) the cohort mean per subject: (a) + --labelled-test-fraction x (b) (default 0.004:
    200 labelled test subjects in 50,000, the test fifth of UK Biobank's ~1,000 labelled).
Every subject here is labelled and runs every step, so (a), (b) and (c) come from the same
subjects. No network runs: the segmentation is the subject's aligned manual label cine
(ED and ES only), in the place of the network's.

--profile STEP prints the top cProfile entries (by cumulative time) of that step over
every subject. --results keeps the results folder there (default: a temporary folder); a
folder kept by an earlier run with the same --subjects, --frames, --seed and encoding
reuses its generated subjects (the timed steps rerun). --baseline REV first runs the same
benchmark on the code of git revision REV (a temporary worktree): before and after in one run.
"""

import argparse
import cProfile
import io
import json
import logging
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

import cinerecon.baselines.cpd  # noqa: F401  (imported lazily by the stages: kept out of the timing)
import cinerecon.io.ukbb_dicom  # noqa: F401
from cinerecon.align.files import align_labels
from cinerecon.cohort import stages as cohort
from cinerecon.evaluate import truth_metric_rows, truth_phenotype_row
from cinerecon.io.files import write_parquet
from cinerecon.labels import lax_conventions
from cinerecon.layout import Layout
from cinerecon.preprocess.crop import crop_label_files
from cinerecon.preprocess.ingest import ingest_labels
from cinerecon.stages import (
    Subject,
    _views,
    align_run,
    crop_run,
    evaluate_run,
    ingest_dicom_run,
    recon_run,
    reference_run,
    synth_run,
)
from cinerecon.workflow import use_threads

from common import worktree  # benchmarks/common.py

BUDGET_S = 10.0
METHODS = ["nn", "linear", "sdf", "cpd"]
# the demo_dicom run's quirks, read from its config so the two never drift apart
QUIRKS = yaml.safe_load((Path(__file__).resolve().parents[1] / "config/demo_dicom.yaml").read_text()
                        )["cohort"]["synthetic"]["dicom"]
PLAIN = dict(sax_layout="mixed", lax_layout="separate", compress=False)  # native pixels, a series per view
CROP = (128, 128)  # the paper preset's sax_size and lax_size
TARGET_SPACING_MM = 1.0
QC = {"min_voxels": 10, "min_slices": 3}
# the parts of a run (docstring): every subject, a labelled test subject's extra, synthetic truth
EVERY, LABELLED_TEST, TRUTH = "every subject", "labelled test subject", "synthetic truth"


def steps(layout: Layout, s: Subject) -> dict:
    """{step: (part, callable)} in pipeline order; the `run` functions of the stages with
    the work on labels and truth split off (each piece called as its stage calls it)."""
    images = Subject(s.id, labelled=False)   # what an unlabelled subject runs
    zips = {s.id: list(layout.synthetic_zips(s.id).values())}
    nifti, crop, aligned = layout.nifti(s.id, True), layout.crop(s.id, True), layout.aligned(s.id)

    def seg_record():
        # the stand-in for the network's segmentation (the copy, a few ms, is counted here)
        layout.seg(s.id).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(aligned["label_sa"], layout.seg(s.id))
        cohort.seg_record_run(layout, s, QC)

    def truth_metrics(method):   # evaluate_run's truth=True part
        recon, t = layout.recon(method, s.id), layout.truth(s.id)
        write_parquet(layout.eval_truth(method, s.id),
                      truth_metric_rows(s.id, method, {"ED": recon["ED"], "ES": recon["ES"]},
                                        {"ED": t["ED"], "ES": t["ES"]}))

    def truth_phenotypes():      # reference_run's truth=True part
        write_parquet(layout.phenotypes("truth", s.id),
                      truth_phenotype_row(s.id, layout.truth(s.id)["phenotypes"]))

    return {
        "ingest": (EVERY, lambda: ingest_dicom_run(layout, images, zips, {})),
        "ingest labels": (LABELLED_TEST, lambda: ingest_labels(
            layout.synthetic(s.id), s.id, _views(nifti, "label_"), images_folder=nifti["sa"].parent,
            lax=s.lax_conventions)),
        "crop": (EVERY, lambda: crop_run(layout, images, CROP, CROP)),
        "crop labels": (LABELLED_TEST, lambda: crop_label_files(
            s.id, _views(nifti, "label_"), layout.crop_record(s.id), _views(crop, "label_"),
            layout.centring(s.id))),
        "align": (EVERY, lambda: align_run(layout, images, "intensity", 8.0)),
        "align labels": (LABELLED_TEST, lambda: align_labels(s.id, crop["label_sa"], aligned["shifts"],
                                                             aligned["label_sa"])),
        "seg record": (EVERY, seg_record),
        **{f"cohort baseline {m}": (EVERY, lambda m=m: cohort.recon_run(layout, s, m, TARGET_SPACING_MM))
           for m in METHODS},
        **{f"baseline {m}": (LABELLED_TEST, lambda m=m: recon_run(layout, s, m, TARGET_SPACING_MM))
           for m in METHODS},
        **{f"evaluate {m}": (LABELLED_TEST, lambda m=m: evaluate_run(layout, s, m, truth=False))
           for m in METHODS},
        "reference phenotypes": (LABELLED_TEST, lambda: reference_run(layout, s, truth=False)),
        **{f"truth metrics {m}": (TRUTH, lambda m=m: truth_metrics(m)) for m in METHODS},
        "truth phenotypes": (TRUTH, truth_phenotypes),
    }


def generate(layout: Layout, s: Subject, i: int, args, encoding: dict) -> float:
    """Write subject i (seconds taken; 0 where a kept folder has it already)."""
    key = dict(seed=args.seed, index=i, frames=args.frames, dicom=encoding)
    marker = layout.synthetic(s.id) / "bench_generation.json"
    if marker.exists() and json.loads(marker.read_text()) == key:
        return 0.0
    t0 = time.perf_counter()
    synth_run(layout, s, args.seed, {s.id: i}, {"n_frames": args.frames}, dicom=encoding)
    marker.write_text(json.dumps(key))
    return time.perf_counter() - t0


def run_baseline(rev: str, argv: list[str]) -> None:
    """This script, with the same arguments, on the cinerecon of `rev`."""
    with worktree(rev) as tree:
        print(f"## baseline {rev}", flush=True)
        subprocess.run([sys.executable, __file__, *argv], check=True,
                       env={**os.environ, "PYTHONPATH": str(tree)}, cwd=tree)
    print("\n## this checkout", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--plain", action="store_true",
                        help="DICOM zips without the demo_dicom quirks: native pixels, one series per view")
    parser.add_argument("--labelled-test-fraction", type=float, default=200 / 50_000,
                        help="share of the cohort that is labelled test subjects (default 200 in 50,000)")
    parser.add_argument("--profile", help="a step (e.g. align, 'cohort baseline cpd') to profile with cProfile")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--results", help="keep the results folder here")
    parser.add_argument("--baseline", metavar="REV",
                        help="first run this benchmark on the code of git revision REV (before/after in one run)")
    args = parser.parse_args()
    if args.baseline:
        run_baseline(args.baseline, [a for a in sys.argv[1:] if a not in ("--baseline", args.baseline)])
    use_threads(1)  # as `threads: 1` (CPU_STAGE_THREADS) gives each CPU shard job
    # the quirky zips' warnings (repeated slices, views assigned by geometry) are expected here
    logging.getLogger("cinerecon.io.ukbb_dicom").setLevel(logging.ERROR)
    encoding = PLAIN if args.plain else QUIRKS
    rows, profiler = [], cProfile.Profile() if args.profile else None
    generation = []
    with tempfile.TemporaryDirectory() as tmp:
        layout = Layout(args.results or Path(tmp) / "results")
        for i in range(args.subjects):
            s = Subject(f"{1000000 + i}", labelled=True, lax=lax_conventions("ukbb"))
            generation.append(generate(layout, s, i, args, encoding))
            todo = steps(layout, s)
            if args.profile and args.profile not in todo:
                parser.error(f"--profile: no step {args.profile!r}; steps: {', '.join(todo)}")
            for name, (part, run) in todo.items():
                profiling = profiler is not None and name == args.profile
                cpu, wall = time.process_time(), time.perf_counter()
                if profiling:
                    profiler.enable()
                run()
                if profiling:
                    profiler.disable()
                rows.append(dict(subject=s.id, step=name, part=part, cpu_s=time.process_time() - cpu,
                                 wall_s=time.perf_counter() - wall))
    table = pd.DataFrame(rows)
    import cinerecon

    print(f"{args.subjects} subjects at UK Biobank geometry ({args.frames} frames), one thread; "
          f"cinerecon from {Path(cinerecon.__file__).parents[1]}")
    print("DICOM encoding: " + ("plain (native pixels, one series per view)" if args.plain else
                                "the demo_dicom quirks (RLE, mixed series, a duplicated slice, shuffled)"))
    print(f"not timed: generation + DICOM writing {np.mean(generation):.1f} s/subject"
          + (" (reused)" if not any(generation) else ""))
    print("segmentation: the aligned manual labels (ED/ES) stand in for the network's\n")
    by_step = (table.groupby("step", sort=False)
               .agg(part=("part", "first"), cpu_s=("cpu_s", "mean"), cpu_max=("cpu_s", "max"),
                    wall_s=("wall_s", "mean")))
    print("per step, seconds per subject (mean, max over subjects):")
    print(by_step.round(3).to_markdown())
    per_subject = table.groupby(["part", "subject"], sort=False)[["cpu_s", "wall_s"]].sum()
    parts = per_subject.groupby("part", sort=False).agg(
        cpu_s=("cpu_s", "mean"), cpu_max=("cpu_s", "max"), wall_s=("wall_s", "mean"))
    every = parts.loc[EVERY]
    verdict = "meets" if every.cpu_max <= BUDGET_S else "misses"
    print(f"\n(a) every subject (ingest, crop, align, seg record, cohort baselines): {every.cpu_s:.2f} CPU-s "
          f"(max {every.cpu_max:.2f}), {every.wall_s:.2f} wall-s; the slowest subject {verdict} the budget "
          f"of {BUDGET_S:.0f} CPU-s")
    extra = parts.loc[LABELLED_TEST]
    print(f"(b) extra for a labelled test subject (labels, baselines from them, evaluation without truth): "
          f"{extra.cpu_s:.2f} CPU-s (max {extra.cpu_max:.2f})")
    truth = parts.loc[TRUTH]
    print(f"(c) synthetic cohorts only, truth metrics and phenotypes: {truth.cpu_s:.2f} CPU-s (max {truth.cpu_max:.2f})")
    mean = every.cpu_s + args.labelled_test_fraction * extra.cpu_s
    print(f"(d) cohort mean per subject with {args.labelled_test_fraction:g} labelled test subjects: "
          f"{mean:.2f} CPU-s = (a) + {args.labelled_test_fraction:g} x (b)")
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(args.top)
        print(f"\ncProfile of {args.profile!r} over {args.subjects} subjects (cumulative):\n{out.getvalue()}")


if __name__ == "__main__":
    main()
