"""Shards: many subjects per job, outputs per subject, failures per subject.

At cohort scale one job per subject per rule costs more in DAG building, scheduling and
start-up (Snakefile parsing, imports, model loading) than the work itself. A shard job
runs one stage for a fixed group of subjects and writes every subject's files in the
usual layout; Snakemake sees only the shard's manifest, one TSV row per subject:

    subject  status  reason  digest

`status` is `ok`, `failed` (this stage raised; `reason` says why) or `skipped` (an earlier
stage failed for that subject). `digest` hashes the subject's inputs and output files
(cinerecon.journal), so a manifest changes exactly when some subject's results or what they
were made from change. A bad subject fails alone: its stage outputs are removed, the rest of
its shard carries on, and the report lists it. An environment fault fails the job instead
(cinerecon.faults), and the retry resumes from the shard's journal.
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
from cinerecon.journal import Journal, canonical, code_version, content_digest, sha1

SHARD_PATTERN = r"b[0-9]+"
MANIFEST_COLUMNS = ["subject", "status", "reason", "digest"]


def make_shards(subjects: list[str], size: int) -> dict[str, list[str]]:
    """Consecutive groups of `size` subjects in sheet order: b0000, b0001, ...

    Membership depends only on a subject's position, so appending subjects to the sheet
    touches the last shard alone.
    """
    if size < 1:
        raise ValueError(f"subjects per shard must be >= 1, got {size}")
    width = max(4, len(str(max(len(subjects) - 1, 0) // size)))
    return {f"b{k // size:0{width}d}": list(subjects[k:k + size]) for k in range(0, len(subjects), size)}


# Beyond this many shards a plan slows faster than the cohort grows: Snakemake checks each
# group job's members against everything upstream of them (DAG._check_groups), so that step
# grows with the square of the shard count, and each shard adds about ten cluster submissions
# (benchmarks/bench_scale.py prints both).
MANY_SHARDS = 200


def shard_size_advice(n_subjects: int, size: int, limit: int = MANY_SHARDS) -> str | None:
    """A warning when `n_subjects` in shards of `size` make more than `limit` shards, naming
    a size (a multiple of 100) that keeps them within it; None otherwise.

    >>> shard_size_advice(5000, 100) is None
    True
    >>> shard_size_advice(50000, 100).endswith("batch.subjects_per_shard: 300")
    True
    """
    shards = -(-n_subjects // size)
    if shards <= limit:
        return None
    suggested = -(-n_subjects // (limit * 100)) * 100
    return (f"{n_subjects} subjects make {shards} shards of {size}: planning time grows with the "
            f"square of the shard count and the cluster gets about ten submissions per shard. "
            f"Shard membership follows the sheet order, so choose the size once per cohort, "
            f"before the first run, e.g. batch.subjects_per_shard: {suggested}")


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


def upstream_problems(rows_of: dict[str, list]) -> dict[str, str]:
    """{subject: "stage: reason"} for subjects that did not pass an earlier stage, from
    upstream_rows. A subject missing from a manifest is not blocked: that stage did not
    apply to it."""
    return {s: next(f"{stage}: {reason}" for stage, status, _, reason in rows if status != "ok")
            for s, rows in rows_of.items() if any(row[1] != "ok" for row in rows)}


def remove_files(paths: Iterable) -> None:
    from cinerecon.io.files import remove_with_temporaries

    remove_with_temporaries(paths)


def is_manifest(path) -> bool:
    """results/shards/{stage}/{shard}.tsv"""
    path = Path(path)
    return path.suffix == ".tsv" and path.parent.parent.name == "shards"


def results_root(manifest_path) -> Path:
    """results/ of results/shards/{stage}/{shard}.tsv"""
    parents = Path(manifest_path).absolute().parents
    return parents[2] if len(parents) > 2 else parents[-1]


def _relative(path: Path, root: Path) -> str:
    """A path as written in a journal: relative to the results root when under it."""
    try:
        return str(path.absolute().relative_to(root))
    except ValueError:
        return str(path)


def upstream_rows(manifest_paths: Iterable) -> dict[str, list]:
    """{subject: [[stage, status, digest, reason], ...]} over the given manifests, in their order."""
    rows: dict[str, list] = {}
    for path in manifest_paths:
        stage = Path(path).parent.name
        for row in read_manifests([path]).itertuples():
            rows.setdefault(row.subject, []).append([stage, row.status, row.digest, row.reason])
    return rows


def run_shard(stage: str, subjects: list[str], work: Callable[[str], object],
              outputs: Callable[[str], list], manifest_path, upstream: Iterable = (),
              log: logging.Logger | None = None, describe: Callable[[str], object] | None = None,
              raw_files: Callable[[str], list] | None = None) -> pd.DataFrame:
    """Run `work(subject)` for every subject, isolate input faults, resume, write the manifest.

    outputs(subject) lists the files work(subject) writes: they are removed before the
    subject runs (no stale results) and after it fails (nothing partial is left).
    upstream: the job's declared inputs; manifests among them block subjects that failed
    earlier and, with every other input file (by content), enter each subject's digest.
    describe(subject): what else the subject's results depend on (settings; plain data).
    raw_files(subject): files read from outside the results root (ingest), checked by
    size and mtime for reuse.

    Faults (cinerecon.faults): an input or internal fault fails the subject alone; an
    environment fault (out of memory, I/O, signals) removes the subject's partial files and
    fails the job, so that a retry runs exactly the subjects not yet finished (journal).
    """
    from cinerecon.faults import ENVIRONMENT, INTERNAL, fault_class

    log = log or logging.getLogger(f"cinerecon.{stage}")
    upstream = [str(p) for p in upstream]
    manifests = [p for p in upstream if is_manifest(p)]
    other_inputs = {"/".join(Path(p).parts[-3:]): content_digest(p) for p in upstream if not is_manifest(p)}
    rows_of = upstream_rows(manifests)  # read once: for blocking and for the digests
    blocked = upstream_problems(rows_of)
    journal, root = Journal(manifest_path), results_root(manifest_path)
    done = journal.load()
    rows, entries, reused, total = [], [], 0, len(subjects)
    started = time.perf_counter()
    for n, subject in enumerate(subjects, 1):
        files = [Path(p) for p in outputs(subject)]
        if subject in blocked:
            remove_files(files)
            log.warning("subject %s skipped: failed earlier at %s", subject, blocked[subject])
            rows.append([subject, "skipped", blocked[subject], ""])
            continue
        upstream = [row[:3] for row in rows_of.get(subject, [])]  # (stage, status, digest)
        inputs = sha1(canonical({"stage": stage, "upstream": upstream, "inputs": other_inputs,
                                 "subject": describe(subject) if describe else subject}))
        key = sha1(inputs, code_version(), stat_fingerprint(raw_files(subject)) if raw_files else "")
        entry = done.get(subject)
        if entry and entry.get("key") == key and (
                entry["status"] == "failed" or entry.get("stat") == stat_fingerprint(files)):
            if entry["status"] == "failed":
                remove_files(files)
            rows.append([subject, entry["status"], entry["reason"], entry["digest"]])
            entries.append(entry)
            reused += 1
            log.info("subject %s (%d/%d): unchanged since a previous run (%s), not recomputed",
                     subject, n, total, entry["status"])
            continue
        remove_files(files)
        subject_start = time.perf_counter()
        try:
            work(subject)
            missing = [str(p) for p in files if not p.exists()]
            if missing:
                raise RuntimeError(f"{stage} did not write {missing}")
        except BaseException as exc:
            remove_files(files)  # nothing partial is left
            kind = fault_class(exc)
            reason = " ".join(str(exc).split()) or type(exc).__name__
            if kind == ENVIRONMENT:
                log.error("subject %s (%d/%d): environment fault, stopping the job so that it is "
                          "retried (%d subjects finished are kept): %s: %s", subject, n, total,
                          len(entries), type(exc).__name__, reason)
                raise
            if kind == INTERNAL:
                reason = f"internal error ({type(exc).__name__}): {reason}"
            if subject not in reason:
                reason = f"subject {subject}: {reason}"
            log.error("%s failed: %s", stage, reason, exc_info=kind == INTERNAL)
            print(f"cinerecon {stage} failed: {reason}", file=sys.stderr)
            entry = {"subject": subject, "key": key, "status": "failed", "reason": reason, "digest": ""}
        else:
            digest = sha1(inputs, files_digest(files))
            entry = {"subject": subject, "key": key, "status": "ok", "reason": "", "digest": digest,
                     "stat": stat_fingerprint(files), "outputs": [_relative(p, root) for p in files]}
            elapsed = time.perf_counter() - started
            computed = n - reused - sum(r[1] == "skipped" for r in rows)
            left = elapsed / max(computed, 1) * (total - n)
            log.info("subject %s (%d/%d) done in %.2f s; %.0f s elapsed, ~%.0f s left",
                     subject, n, total, time.perf_counter() - subject_start, elapsed, left)
        journal.record(entry)
        entries.append(entry)
        rows.append([subject, entry["status"], entry["reason"], entry["digest"]])
    table = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    write_tsv(manifest_path, table)
    journal.rewrite(entries)
    if reused:
        log.info("%d of %d subjects reused from an earlier run", reused, total)
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


def qc_subjects(subjects, limit: int | None = 20, seed: int = 0) -> list[str]:
    """A bounded, deterministic subset of `subjects`, in their order; limit None or 0: all.

    Each subject is ranked by a hash of (seed, subject ID), so the choice does not depend
    on the order of the list, and a growing cohort keeps its chosen subjects unless a new
    one ranks before them.

    >>> qc_subjects(["a", "b", "c"], None)
    ['a', 'b', 'c']
    >>> len(qc_subjects([f"S{i}" for i in range(100)], 5, seed=1))
    5
    """
    subjects = list(dict.fromkeys(str(s) for s in subjects))
    if not limit:
        return subjects
    if int(limit) < 0:
        raise ValueError(f"qc subject limit must be >= 0 (0 or None: all), got {limit}")

    def rank(s: str) -> str:
        return hashlib.sha256(f"{seed}:{s}".encode()).hexdigest()

    chosen = set(sorted(subjects, key=rank)[: int(limit)])
    return [s for s in subjects if s in chosen]
