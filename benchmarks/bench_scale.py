"""Cohort scale: DAG build time and memory, jobs and cluster submissions, no-op reruns.

For each cohort size a subjects sheet is generated (NIfTI cohort; no images are needed to
plan) and `snakemake -n` is timed in a fresh process, with the SLURM profile's job groups
so the count of group jobs is what the cluster would receive. Usage:

    python benchmarks/bench_scale.py [--sizes 1000 5000 10000 50000 100000] [--labelled 1.0]
        [--per-shard 500] [--baseline REV] [--explain] [--demo]

Every method a NIfTI cohort can run is planned: the baselines, DirectSeg, DeepRecon with its
variants, DMCVR and DiffAE, the whole-heart MAE (Gemini-GAN trains on 3D truth, which only the
synthetic cohort has). --per-shard is batch.subjects_per_shard: 500 is what a whole UK Biobank
cohort should use (README); 100 is the paper preset's.

Printed per size: seconds, peak memory, jobs, cluster submissions, seconds per 1,000 subjects
and the growth exponent from the previous size (1: linear; 2: quadratic), then what the
largest size submits (group jobs per group, ungrouped jobs per rule).

--baseline REV also plans the same cohorts with the code of git revision REV (a temporary
worktree), in the same run, so before and after are measured on the same machine.
--explain profiles the two largest sizes (cProfile) and lists the functions whose time grows
faster than the cohort.
--demo also times a no-op `snakemake -n` of the demo (run `snakemake --cores 2` first).
"""

from __future__ import annotations

import argparse
import math
import os
import pstats
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import yaml

from common import REPO, worktree  # benchmarks/common.py


def plan(config: Path | None, *extra: str, repo: Path = REPO, profile_to: Path | None = None) -> dict:
    """Run `snakemake -n` in `repo` (`config` merged over its preset, the demo by default) once:
    wall time, peak RSS of the child, jobs and cluster submissions (and the dry-run's output)."""
    python = [sys.executable] + (["-m", "cProfile", "-o", str(profile_to)] if profile_to else [])
    cmd = [*python, "-m", "snakemake", "-n", "--cores", "2", *extra]
    if config:
        cmd += ["--configfile", str(config)]
    start = time.perf_counter()
    # the checkout's own cinerecon, not the one installed (a --baseline worktree's code)
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=repo, env=env)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak memory (ru_maxrss, KB)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(out[-3000:])
    return {"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024, **count_jobs(out), "output": out}


def dry_run_blocks(output: str) -> list[tuple[bool, list[str], bool]]:
    """(is a group job, its rules, runs in the main process) per job the dry run prints: local
    rules and the target rule `all`, which has nothing to run."""
    blocks = []
    for block in re.split(r"\n(?=\[)", output):
        rules = re.findall(r"^\s*(?:local)?rule (\w+):", block, re.M)
        if rules:
            group = "Group job" in block.split("\n", 1)[0]
            local = bool(re.search(r"^localrule \w+:", block, re.M)) or rules == ["all"]
            blocks.append((group, rules, local))
    return blocks


def count_jobs(output: str) -> dict:
    """Jobs from the dry-run's job stats; submissions = group jobs + ungrouped cluster jobs."""
    total = re.search(r"^total\s+(\d+)", output, re.M)
    blocks = dry_run_blocks(output)
    groups = sum(1 for group, _, _ in blocks if group)
    single = sum(1 for group, _, local in blocks if not group and not local)
    return {"jobs": int(total.group(1)) if total else 0, "group_jobs": groups,
            "submissions": groups + single}


def submissions_by_kind(output: str) -> pd.Series:
    """Cluster submissions per group (named by its rules) and per ungrouped rule."""
    kinds = Counter()
    for group, rules, local in dry_run_blocks(output):
        if group:
            kinds["group: " + "+".join(sorted(set(rules)))] += 1
        elif not local:
            kinds[rules[0]] += 1
    return pd.Series(kinds, name="submissions").sort_values(ascending=False)


def cohort_config(folder: Path, n: int, labelled: float, per_shard: int) -> Path:
    """A NIfTI cohort of n subjects (70/10/20 train/val/test) with every method a NIfTI cohort
    runs enabled; no image files exist."""
    ids = [str(1_000_000 + i) for i in range(n)]
    split = ["train" if i % 10 < 7 else "val" if i % 10 == 7 else "test" for i in range(n)]
    has_labels = [i < labelled * n for i in range(n)]
    sheet = folder / "subjects.tsv"
    (folder / "ukbb").mkdir(exist_ok=True)  # the configured root must exist; its files need not
    pd.DataFrame({"subject": ids, "split": split, "has_labels": has_labels}).to_csv(sheet, sep="\t", index=False)
    cfg = {"results": str(folder / "results"),
           "cohort": {"kind": "nifti", "nifti": {"root": str(folder / "ukbb"), "sheet": str(sheet)}},
           "batch": {"subjects_per_shard": per_shard},
           **{method: {"enabled": True} for method in ("deeprecon", "dmcvr", "mae")}}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def curve(sizes, args, repo: Path = REPO, label: str = "this checkout"):
    """Plan each size; print a line as each finishes and return the rows and the largest
    size's submissions by kind."""
    rows, kinds = [], None
    for n in sorted(sizes):  # peak RSS of children only grows
        with tempfile.TemporaryDirectory() as tmp:
            config = cohort_config(Path(tmp), n, args.labelled, args.per_shard)
            figures = plan(config, "--profile", str(repo / "profiles/slurm"), repo=repo)
        kinds = submissions_by_kind(figures.pop("output"))
        if rows:
            previous = rows[-1]
            figures["growth"] = math.log(figures["seconds"] / previous["seconds"]) / math.log(n / previous["subjects"])
        rows.append({"code": label, "subjects": n, **figures, "s_per_1000": 1000 * figures["seconds"] / n})
        print(f"[{label}] {n:>6} subjects: snakemake -n {figures['seconds']:.1f} s, peak {figures['peak_mb']:.0f} MB, "
              f"{figures['jobs']} jobs, {figures['submissions']} cluster submissions "
              f"({figures['group_jobs']} group jobs)", flush=True)
    return rows, kinds


def profiled(sizes, args) -> dict:
    """cProfile files of `snakemake -n` at each size (separate runs: profiling slows them)."""
    folder = Path(tempfile.mkdtemp())
    files = {}
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            config = cohort_config(Path(tmp), n, args.labelled, args.per_shard)
            files[n] = folder / f"{n}.prof"
            plan(config, "--profile", str(REPO / "profiles/slurm"), profile_to=files[n])
    return files


# Entry points: their time is the sum of everything below them
WRAPPERS = re.compile(r"__main__|cli\.py|api\.py|workflow\.py:(261|1281)|runners\.py|base_events")


def superlinear(profiles: dict, threshold: float = 1.2, min_seconds: float = 1.0, top: int = 15) -> pd.DataFrame:
    """Functions (Snakemake's and the workflow's) whose cumulative time grows with an exponent
    above `threshold` between the two profiled sizes, the `top` slowest."""
    (small, f_small), (large, f_large) = sorted(profiles.items())
    a, b = pstats.Stats(str(f_small)).stats, pstats.Stats(str(f_large)).stats
    rows = []
    for key, stats in b.items():
        where = key[0]
        if key not in a or stats[3] < min_seconds or not ("snakemake" in where or str(REPO) in where):
            continue
        if WRAPPERS.search(f"{where}:{key[1]}"):
            continue
        exponent = math.log(stats[3] / max(a[key][3], 1e-9)) / math.log(large / small)
        if exponent > threshold:
            rows.append({"function": f"{where.split('site-packages/')[-1].replace(str(REPO) + '/', '')}:{key[1]} {key[2]}",
                         f"s at {small}": a[key][3], f"s at {large}": stats[3], "growth": exponent,
                         f"calls at {large}": stats[0]})
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).sort_values(f"s at {large}", ascending=False).head(top)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000, 50000, 100000])
    ap.add_argument("--labelled", type=float, default=1.0,
                    help="fraction of subjects with manual labels (1.0: every evaluation runs)")
    ap.add_argument("--per-shard", type=int, default=500, help="batch.subjects_per_shard")
    ap.add_argument("--baseline", help="also plan with the code of this git revision (before/after)")
    ap.add_argument("--explain", action="store_true",
                    help="profile the two largest sizes and list what grows faster than the cohort")
    ap.add_argument("--demo", action="store_true", help="also time a no-op rerun of the demo")
    args = ap.parse_args()
    print(f"batch.subjects_per_shard: {args.per_shard}; labelled fraction {args.labelled}; "
          f"every method a NIfTI cohort runs; SLURM profile's groups", flush=True)
    rows, kinds = [], {}
    if args.baseline:
        with worktree(args.baseline) as tree:
            base_rows, kinds["baseline"] = curve(args.sizes, args, tree, f"baseline {args.baseline}")
            rows += base_rows
    new_rows, kinds["this checkout"] = curve(args.sizes, args)
    rows += new_rows
    if args.explain:
        print("\nGrowing faster than the cohort (cProfile of separate runs, cumulative seconds):")
        print(superlinear(profiled(sorted(args.sizes)[-2:], args)).round(2).to_markdown(index=False))
    print()
    print(pd.DataFrame(rows).round(2).to_markdown(index=False))
    for label, by_kind in kinds.items():
        print(f"\nSubmissions at {max(args.sizes)} subjects ({label}):")
        print(by_kind.to_markdown())
    if args.demo:
        noop = [plan(None)["seconds"] for _ in range(3)]
        print(f"no-op rerun of the demo (snakemake -n, finished results): "
              f"median {sorted(noop)[1]:.2f} s over 3 runs")


if __name__ == "__main__":
    main()
