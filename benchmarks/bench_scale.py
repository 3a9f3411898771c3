"""Cohort scale: DAG build time and memory, jobs and cluster submissions, no-op reruns.

For each cohort size a subjects sheet is generated (NIfTI cohort; no images are needed to
plan) and `snakemake -n` is timed in a fresh process, with the SLURM profile's job groups
so the count of group jobs is what the cluster would receive. Usage:

    python benchmarks/bench_scale.py [--sizes 1000 5000 10000] [--labelled 1.0] [--per-shard 100] [--demo]

The demo config's methods are planned (baselines, DirectSeg, DeepRecon with its variants).

--demo also times a no-op `snakemake -n` of the demo (run `snakemake --cores 2` first).
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]


def plan(config: Path | None, *extra: str) -> dict:
    """Run `snakemake -n` in the repository (`config` merged over its preset, the demo by default) once:
    wall time, peak RSS of the child, jobs and cluster submissions."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "2", *extra]
    if config:
        cmd += ["--configfile", str(config)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = run.stdout + run.stderr
    if run.returncode:
        raise RuntimeError(out[-3000:])
    return {"seconds": seconds, "peak_mb": max(peak_kb, before) / 1024, **count_jobs(out)}


def count_jobs(output: str) -> dict:
    """Jobs from the dry-run's job stats; submissions = group jobs + ungrouped cluster jobs."""
    total = re.search(r"^total\s+(\d+)", output, re.M)
    jobs = int(total.group(1)) if total else 0
    groups = len(re.findall(r"Group job \S+ \(jobs in lexicogr", output))
    grouped = 0
    for block in re.split(r"\n(?=\[)", output):
        if block.split("\n", 1)[0].find("Group job") >= 0:
            grouped += len(re.findall(r"^\s*rule \w+:", block, re.M))
    local = len(re.findall(r"^localrule \w+:", output, re.M))
    return {"jobs": jobs, "group_jobs": groups, "submissions": groups + jobs - grouped - local}


def cohort_config(folder: Path, n: int, labelled: float, per_shard: int) -> Path:
    """A NIfTI cohort of n subjects (70/10/20 train/val/test); no image files exist."""
    ids = [str(1_000_000 + i) for i in range(n)]
    split = ["train" if i % 10 < 7 else "val" if i % 10 == 7 else "test" for i in range(n)]
    has_labels = [i < labelled * n for i in range(n)]
    sheet = folder / "subjects.tsv"
    (folder / "ukbb").mkdir(exist_ok=True)  # the configured root must exist; its files need not
    pd.DataFrame({"subject": ids, "split": split, "has_labels": has_labels}).to_csv(sheet, sep="\t", index=False)
    cfg = {"results": str(folder / "results"),
           "cohort": {"kind": "nifti", "nifti": {"root": str(folder / "ukbb"), "sheet": str(sheet)}},
           "batch": {"subjects_per_shard": per_shard}}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000])
    ap.add_argument("--labelled", type=float, default=1.0,
                    help="fraction of subjects with manual labels (1.0: every evaluation runs)")
    ap.add_argument("--profile", default=str(REPO / "profiles/slurm"))
    ap.add_argument("--per-shard", type=int, default=100, help="batch.subjects_per_shard")
    ap.add_argument("--demo", action="store_true", help="also time a no-op rerun of the demo")
    args = ap.parse_args()
    rows = []
    for n in sorted(args.sizes):  # peak RSS of children only grows
        with tempfile.TemporaryDirectory() as tmp:
            config = cohort_config(Path(tmp), n, args.labelled, args.per_shard)
            figures = plan(config, "--profile", args.profile)
        rows.append({"subjects": n, **figures})
        print(f"{n:>6} subjects: snakemake -n {figures['seconds']:.1f} s, peak {figures['peak_mb']:.0f} MB, "
              f"{figures['jobs']} jobs, {figures['submissions']} cluster submissions "
              f"({figures['group_jobs']} group jobs)", flush=True)
    print(pd.DataFrame(rows).round(2).to_markdown(index=False))
    if args.demo:
        noop = [plan(None)["seconds"] for _ in range(3)]
        print(f"no-op rerun of the demo (snakemake -n, finished results): "
              f"median {sorted(noop)[1]:.2f} s over 3 runs")


if __name__ == "__main__":
    main()
