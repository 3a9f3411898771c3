"""Shards: many subjects per job, outputs per subject, failures per subject.

At cohort scale one job per subject per rule costs more in DAG building, scheduling and
start-up (Snakefile parsing, imports, model loading) than the work itself. A shard job
runs one stage for a fixed group of subjects and writes every subject's files in the
usual layout; Snakemake sees only the shard's manifest, one TSV row per subject:

    subject  status  reason  digest

`status` is `ok`, `failed` (this stage raised; `reason` says why) or `skipped` (an earlier
stage failed for that subject). `digest` hashes the subject's output files, so a manifest
changes exactly when some subject's outputs change. A bad subject therefore fails alone:
its stage outputs are removed, the rest of its shard carries on, and the report lists it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from cinerecon.io.files import write_tsv

SHARD_PATTERN = r"b[0-9]+"
MANIFEST_COLUMNS = ["subject", "status", "reason", "digest"]


class ShardError(RuntimeError):
    """Every subject of a shard failed: a systematic problem, not a bad subject."""


def make_shards(subjects: list[str], size: int) -> dict[str, list[str]]:
    """Consecutive groups of `size` subjects in sheet order: b0000, b0001, ...

    Membership depends only on a subject's position, so appending subjects to the sheet
    touches the last shard alone.
    """
    if size < 1:
        raise ValueError(f"subjects per shard must be >= 1, got {size}")
    width = max(4, len(str(max(len(subjects) - 1, 0) // size)))
    return {f"b{k // size:0{width}d}": list(subjects[k:k + size]) for k in range(0, len(subjects), size)}


def stat_fingerprint(paths: Iterable) -> str:
    """Hash of (path, size, mtime) of input files: cheap change detection for raw data.

    Missing files count as such, so a file that appears or disappears changes it too.
    """
    h = hashlib.sha1()
    for path in paths:
        try:
            st = os.stat(path)
            h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except FileNotFoundError:
            h.update(f"{path}\0missing\n".encode())
    return h.hexdigest()


def files_digest(paths: Iterable) -> str:
    """Content hash of a subject's outputs, independent of where the results root is.

    Each file is named by its last three path parts (e.g. `lax/nn/S1.parquet`), which
    tell a stage's files apart, so equal results in two folders have equal digests.
    """
    h = hashlib.sha1()
    for path in sorted(str(p) for p in paths):
        h.update("/".join(Path(path).parts[-3:]).encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def read_manifests(paths: Iterable) -> pd.DataFrame:
    frames = [pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False) for p in paths]
    if not frames:
        return pd.DataFrame(columns=MANIFEST_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def ok_subjects(paths: Iterable) -> list[str]:
    table = read_manifests(paths)
    return list(table.loc[table["status"] == "ok", "subject"])


def upstream_problems(manifest_paths: Iterable) -> dict[str, str]:
    """{subject: reason} for subjects that did not pass an earlier stage.

    The stage is named by the manifest's folder (shards/{stage}/{shard}.tsv). A subject
    missing from a manifest is not blocked: that stage did not apply to it.
    """
    blocked = {}
    for path in manifest_paths:
        table = read_manifests([path])
        for row in table.itertuples():
            if row.status != "ok" and row.subject not in blocked:
                blocked[row.subject] = f"{Path(path).parent.name}: {row.reason}"
    return blocked


def remove_files(paths: Iterable) -> None:
    for path in paths:
        Path(path).unlink(missing_ok=True)


def run_shard(stage: str, subjects: list[str], work: Callable[[str], object],
              outputs: Callable[[str], list], manifest_path, upstream: Iterable = (),
              log: logging.Logger | None = None) -> pd.DataFrame:
    """Run `work(subject)` for every subject, isolate failures, write the manifest.

    outputs(subject) lists the files work(subject) writes: they are removed before the
    subject runs (no stale results) and after it fails (nothing partial is left).
    Raises ShardError (the job fails) when several subjects were attempted and all failed,
    unless every failure is an input fault (InputError: the subjects' own data, e.g. a
    segmentation with no LV): that is a systematic problem (configuration, environment), not
    one bad subject, while a shard of bad subjects still writes its manifest so that the cohort
    tables list them.
    """
    from cinerecon.io.nifti import InputError  # (nibabel: not at DAG-building time)

    log = log or logging.getLogger(f"cinerecon.{stage}")
    blocked = upstream_problems(upstream)
    rows, attempted, failures, systematic = [], 0, [], 0
    for subject in subjects:
        files = [Path(p) for p in outputs(subject)]
        remove_files(files)
        if subject in blocked:
            log.warning("subject %s skipped: failed earlier at %s", subject, blocked[subject])
            rows.append([subject, "skipped", blocked[subject], ""])
            continue
        attempted += 1
        start = time.perf_counter()
        try:
            work(subject)
            missing = [str(p) for p in files if not p.exists()]
            if missing:
                raise RuntimeError(f"{stage} did not write {missing}")
        except Exception as exc:  # one subject's failure must not stop its shard
            remove_files(files)
            reason = " ".join(str(exc).split()) or type(exc).__name__
            if subject not in reason:
                reason = f"subject {subject}: {reason}"
            log.error("%s failed: %s", stage, reason, exc_info=not isinstance(exc, ValueError))
            print(f"cinerecon {stage} failed: {reason}", file=sys.stderr)
            rows.append([subject, "failed", reason, ""])
            failures.append(reason)
            systematic += not isinstance(exc, InputError)
            continue
        log.info("subject %s done in %.2f s", subject, time.perf_counter() - start)
        rows.append([subject, "ok", "", files_digest(files)])
    table = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    if attempted > 1 and len(failures) == attempted and systematic:
        raise ShardError(f"{stage}: all {attempted} subjects of the shard failed; first: {failures[0]}")
    write_tsv(manifest_path, table)
    return table


def subject_status(manifest_paths: Iterable, subjects: list[str]) -> pd.DataFrame:
    """One row per subject: `ok`, or the first stage that failed it and why.

    Stages are read in the order given (the pipeline order); `not run` marks subjects
    no manifest mentions (e.g. a shard whose job itself failed).
    """
    first_problem, seen = {}, set()
    for path in manifest_paths:
        table = read_manifests([path])
        seen.update(table["subject"])
        for row in table.itertuples():
            if row.status == "failed" and row.subject not in first_problem:
                first_problem[row.subject] = (Path(path).parent.name, row.reason)
    rows = []
    for s in subjects:
        if s in first_problem:
            rows.append([s, "failed", *first_problem[s]])
        else:
            rows.append([s, "ok" if s in seen else "not run", "", ""])
    return pd.DataFrame(rows, columns=["subject", "status", "stage", "reason"])
