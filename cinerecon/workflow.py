"""Helpers shared by the thin workflow scripts (logging, error reporting).

The library itself never reads `snakemake.*`; scripts pass plain values in.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path


_STARTED_LOGS: set[str] = set()


@contextmanager
def logged(log_path, step: str, subject: str | None = None):
    """Log to the rule's log file; on failure write one clear line, then re-raise.

    The first use in a process starts the file afresh; later ones (a script that runs
    several stages) append to it.
    """
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    mode = "a" if str(log_path) in _STARTED_LOGS else "w"
    _STARTED_LOGS.add(str(log_path))
    handler = logging.FileHandler(log_path, mode=mode)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    log = logging.getLogger(f"cinerecon.{step}")
    log.info("start%s", f" subject {subject}" if subject else "")
    try:
        yield log
    except Exception as exc:
        message = str(exc)
        if subject and subject not in message:
            message = f"subject {subject}: {message}"
        log.error("%s failed: %s", step, message)
        print(f"cinerecon {step} failed: {message}", file=sys.stderr)
        raise
    else:
        log.info("done")
    finally:
        root.removeHandler(handler)
        handler.close()


def shard_stage(log_path, stage: str, shard: dict, manifest, inputs, outputs, run, params=None,
                raw_files=None, **settings):
    """Run one stage (cinerecon.stages) for the subjects of a shard and write its manifest.

    shard: {"subjects": [ids], "labelled": [ids], "lax": {id: {view: convention}}} (from the
    rule's params); the results root is the manifest's (results/shards/{stage}/{shard}.tsv);
    inputs: the rule's declared inputs (manifests and checkpoints); outputs/run: the stage's
    pair of functions; settings: the stage's keyword arguments. params: the rule's params,
    which with the settings enter each subject's digest (a per-subject dict contributes the
    subject's entry; shard membership none). raw_files(subject): files outside the results
    root the stage reads (cinerecon.batch.run_shard).
    """
    from cinerecon.batch import run_shard
    from cinerecon.faults import raise_on_sigterm
    from cinerecon.layout import Layout
    from cinerecon.stages import Subject

    raise_on_sigterm()
    layout = Layout.of_manifest(manifest)
    labelled = set(shard.get("labelled", ()))
    lax = shard.get("lax", {})
    subjects = {s: Subject(s, s in labelled, lax.get(s)) for s in shard["subjects"]}
    params = dict(params.items()) if hasattr(params, "items") else dict(params or {})

    def describe(s):
        subject = subjects[s]
        return rooted({"id": s, "labelled": subject.labelled, "lax": subject.lax,
                       "settings": {k: subject_view(v, s) for k, v in settings.items()},
                       "params": {k: subject_view(v, s) for k, v in params.items() if k not in SHARD_PARAMS}},
                      str(layout.results))

    with logged(log_path, stage) as log:
        log.info("shard of %d subjects: %s", len(subjects), " ".join(subjects))
        table = run_shard(stage, list(subjects), lambda s: run(layout, subjects[s], **settings),
                          lambda s: outputs(layout, subjects[s], **_output_args(outputs, settings)),
                          manifest, inputs, log, describe,
                          (lambda s: raw_files(subjects[s])) if raw_files else None)
        counts = table["status"].value_counts().to_dict()
        log.info("statuses: %s", counts)
    return table


# Params that describe the shard (its members, a fingerprint of all their raw files), not one
# subject's work: left out of the subjects' digests, so appending a subject to the sheet does
# not make the others of its shard look changed.
SHARD_PARAMS = {"shard", "slices_shard", "raw_fingerprint"}


def subject_view(value, subject: str):
    """A param as one subject sees it: its own entry of a {subject: value} dict (the
    shard's or the cohort's)."""
    if isinstance(value, dict) and subject in value:
        return value[subject]
    return value


def rooted(value, root: str):
    """`value` with the results root in its paths written as `{results}`: equal results in
    two folders have equal digests."""
    if isinstance(value, str):
        return "{results}" + value[len(root):] if value.startswith(root) else value
    if isinstance(value, Path):
        return rooted(str(value), root)
    if isinstance(value, dict):
        return {k: rooted(v, root) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rooted(v, root) for v in value]
    return value


def _output_args(outputs, settings: dict) -> dict:
    """The subset of a stage's settings its outputs() function takes."""
    import inspect

    names = set(inspect.signature(outputs).parameters) - {"layout", "s"}
    return {k: v for k, v in settings.items() if k in names}
