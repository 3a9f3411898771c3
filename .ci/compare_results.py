"""Check that two results folders of the same config hold the same results.

Used by .ci/slurm_demo.sh: every result of the demo run through SLURM (b) must equal the
local run's (a); a may hold more methods than b.
Per-subject outputs are compared through the shard manifests (status and content digest
of every subject's files); cohort tables are compared value by value. Exit status 1 and a
list of differences when they differ.
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

# Stages whose per-subject files must be byte-identical. recon.json records timings, so
# reconstructions and what follows them are compared through the cohort tables instead.
EXACT_STAGES = ("synth", "ingest", "crop", "align", "seg")


def compare_manifests(a: Path, b: Path) -> list[str]:
    problems = []
    names = sorted(p.relative_to(a) for p in (a / "shards").rglob("*.tsv"))
    other = sorted(p.relative_to(b) for p in (b / "shards").rglob("*.tsv"))
    if set(other) - set(names):
        problems.append(f"manifests only in {b}: {sorted(set(other) - set(names))}")
    for name in set(names) & set(other):
        x = pd.read_csv(a / name, sep="\t", dtype=str, keep_default_na=False)
        y = pd.read_csv(b / name, sep="\t", dtype=str, keep_default_na=False)
        exact = name.parts[1] in EXACT_STAGES
        columns = ["subject", "status", "digest"] if exact else ["subject", "status"]
        columns = [c for c in columns if c in x.columns]  # shard_evaluated has no digest
        if not x[columns].equals(y[columns]):
            problems.append(f"{name}: subjects, statuses{' or contents' if exact else ''} differ")
    return problems


def compare_tables(a: Path, b: Path) -> list[str]:
    problems = []
    for other in sorted((b / "tables").glob("*.csv")):
        path = a / "tables" / other.name
        if not path.exists():
            problems.append(f"tables/{other.name} missing from {a}")
            continue
        x, y = pd.read_csv(path), pd.read_csv(other)
        if "method" in x.columns and "method" in y.columns:  # b may run fewer methods
            x = x[x["method"].isin(set(y["method"]))].reset_index(drop=True)
        if list(x.columns) != list(y.columns) or len(x) != len(y):
            problems.append(f"tables/{path.name}: different shape or columns")
            continue
        for column in x.columns:
            u, v = x[column], y[column]
            if pd.api.types.is_numeric_dtype(u) and pd.api.types.is_numeric_dtype(v):
                same = np.allclose(u.to_numpy(float), v.to_numpy(float), rtol=1e-9, atol=1e-12, equal_nan=True)
            else:
                same = u.astype(str).equals(v.astype(str))
            if not same:
                problems.append(f"tables/{path.name}: column {column} differs")
    return problems


def main(a: str, b: str) -> int:
    a_path, b_path = Path(a), Path(b)
    problems = compare_manifests(a_path, b_path) + compare_tables(a_path, b_path)
    for line in problems:
        print(f"DIFFERENT {line}")
    n_tables = len(list((b_path / "tables").glob("*.csv")))
    print(f"compared {a} and {b}: {n_tables} tables, manifests of every stage: "
          f"{'identical' if not problems else f'{len(problems)} differences'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
