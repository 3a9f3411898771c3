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


def shard_stage(log_path, stage: str, shard: dict, manifest, upstream, outputs, run, **settings):
    """Run one stage (cinerecon.stages) for the subjects of a shard and write its manifest.

    shard: {"subjects": [ids], "labelled": [ids], "lax": {id: {view: convention}}} (from the
    rule's params); the results
    root is the manifest's (results/shards/{stage}/{shard}.tsv);
    outputs/run: the stage's pair of functions; settings: the stage's keyword arguments.
    """
    from cinerecon.batch import run_shard
    from cinerecon.layout import Layout
    from cinerecon.stages import Subject

    layout = Layout.of_manifest(manifest)
    labelled = set(shard.get("labelled", ()))
    lax = shard.get("lax", {})
    subjects = {s: Subject(s, s in labelled, lax.get(s)) for s in shard["subjects"]}
    with logged(log_path, stage) as log:
        log.info("shard of %d subjects: %s", len(subjects), " ".join(subjects))
        table = run_shard(stage, list(subjects), lambda s: run(layout, subjects[s], **settings),
                          lambda s: outputs(layout, subjects[s], **_output_args(outputs, settings)),
                          manifest, upstream, log)
        counts = table["status"].value_counts().to_dict()
        log.info("statuses: %s", counts)
    return table


def _output_args(outputs, settings: dict) -> dict:
    """The subset of a stage's settings its outputs() function takes."""
    import inspect

    names = set(inspect.signature(outputs).parameters) - {"layout", "s"}
    return {k: v for k, v in settings.items() if k in names}
