"""Cohort tables: per-subject records aggregated into TSV/parquet/Markdown."""

from __future__ import annotations

import json

import pandas as pd


def frame_from_json(paths) -> pd.DataFrame:
    """One row per JSON record file (flat keys), in the given order."""
    rows = [json.loads(open(p).read()) for p in paths]
    return pd.DataFrame(rows)
