"""Helpers shared by the thin workflow scripts (logging, error reporting).

The library itself never reads `snakemake.*`; scripts pass plain values in.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def logged(log_path, step: str, subject: str | None = None):
    """Log to the rule's log file; on failure write one clear line, then re-raise."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path, mode="w")
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
