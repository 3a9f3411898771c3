"""Progress of a run, read from its results folder while it runs or after it was interrupted.

Every shard job writes its manifest (`shards/{stage}/{shard}.tsv`) when it finishes and, as it
goes, a journal line per finished subject (`{shard}.journal`, cinerecon.journal). So what has
finished is on disk at any moment: this module reads both, with no Snakemake involved, and
gives per-stage counts and a subject status table of whatever has finished.

    python -m cinerecon.progress results            # per-stage counts
    python -m cinerecon.progress results --status partial_status.tsv

The cohort (the denominator) comes from the run's effective configuration,
`{results}/config/effective.yaml`. A journal line counts as finished for the job that is
running or was interrupted; the job itself decides, when it runs again, whether that line
still holds (its inputs unchanged).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import yaml

from cinerecon.journal import Journal

# Stages in pipeline order; any other stage folder follows, alphabetically.
PIPELINE_ORDER = ("synth", "ingest", "crop", "align", "seg", "cohort-seg", "reference")
ROW_COLUMNS = ["stage", "shard", "subject", "status", "reason", "source"]


def stage_order(stages) -> list[str]:
    known = [s for s in PIPELINE_ORDER if s in stages]
    return known + sorted(s for s in stages if s not in PIPELINE_ORDER)


def finished_rows(results) -> pd.DataFrame:
    """One row per (stage, subject) finished: from the manifest of a finished shard, else from
    the journal of an unfinished one (source `manifest` or `journal`)."""
    frames = []
    for folder in sorted(Path(results, "shards").glob("*/")):
        shards = {p.stem for p in folder.glob("*.tsv")} | {p.stem for p in folder.glob("*.journal")}
        for shard in sorted(shards):
            manifest = folder / f"{shard}.tsv"
            if manifest.exists():
                table = pd.read_csv(manifest, sep="\t", dtype=str, keep_default_na=False)
                table = table.assign(source="manifest")
            else:
                entries = Journal(manifest).load().values()
                table = pd.DataFrame([{"subject": e["subject"], "status": e.get("status", "ok"),
                                       "reason": e.get("reason", "")} for e in entries],
                                     columns=["subject", "status", "reason"]).assign(source="journal")
            frames.append(table.assign(stage=folder.name, shard=shard)[ROW_COLUMNS])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ROW_COLUMNS)


def cohort_subjects(results) -> list[str] | None:
    """The run's subjects, from its effective configuration's cohort (None if not written yet)."""
    path = Path(results, "config", "effective.yaml")
    if not path.exists():
        return None
    from cinerecon.io.sheet import cohort_sheet

    return list(cohort_sheet(yaml.safe_load(path.read_text())["cohort"])["subject"])


def stage_summary(rows: pd.DataFrame, subjects=None) -> pd.DataFrame:
    """Per stage: subjects ok and failed (finished shards and running ones' journals), and
    of the cohort (when `subjects` is given) how many no shard of that stage has reported."""
    records = []
    for stage in stage_order(set(rows["stage"])):
        here = rows[rows["stage"] == stage]
        record = {
            "stage": stage,
            "ok": int((here["status"] == "ok").sum()),
            "failed": int((here["status"] == "failed").sum()),
            "shards_done": here.loc[here["source"] == "manifest", "shard"].nunique(),
            "shards_running": here.loc[here["source"] == "journal", "shard"].nunique(),
        }
        if subjects is not None:
            # includes subjects the stage does not apply to (evaluation: test subjects only)
            record["not_reported"] = len(set(subjects) - set(here["subject"]))
        records.append(record)
    return pd.DataFrame(records)


def partial_status(rows: pd.DataFrame, subjects) -> pd.DataFrame:
    """subject_status (cinerecon.batch) from whatever has finished: `failed` at the first stage
    that failed it (pipeline order), else `ok` so far, else `not run`; with the number of
    stages that have reported the subject. One pass over the rows (a cohort has ~10^6)."""
    order = {s: i for i, s in enumerate(stage_order(set(rows["stage"])))}
    reported = rows.groupby("subject").size()
    failed = (rows[rows["status"] == "failed"].assign(rank=lambda f: f["stage"].map(order))
              .sort_values("rank", kind="stable").drop_duplicates("subject").set_index("subject"))
    records = []
    for subject in subjects:
        n = int(reported.get(subject, 0))
        if subject in failed.index:
            first = failed.loc[subject]
            records.append((subject, "failed", first["stage"], first["reason"], n))
        else:
            records.append((subject, "ok" if n else "not run", "", "", n))
    return pd.DataFrame(records, columns=["subject", "status", "stage", "reason", "stages_reported"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="the run's results folder (config key `results`)")
    parser.add_argument("--status", type=Path, help="write the subject status table (TSV) here")
    args = parser.parse_args(argv)
    if not (args.results / "shards").is_dir():
        print(f"{args.results}: no shards/ folder: nothing has run there yet", file=sys.stderr)
        return 1
    rows = finished_rows(args.results)
    subjects = cohort_subjects(args.results)
    print(stage_summary(rows, subjects).to_string(index=False))
    if args.status is not None:
        subjects = subjects if subjects is not None else sorted(set(rows["subject"]))
        from cinerecon.io.files import write_tsv

        write_tsv(args.status, partial_status(rows, subjects))
        print(f"subject status: {args.status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
