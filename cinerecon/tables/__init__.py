"""Cohort tables: per-subject records aggregated into parquet/CSV/Markdown.

:mod:`.cohort` holds the papers' tables (LAX Dice, truth metrics, phenotype
agreement) and their writer; ``frame_from_json`` reads flat JSON records.
"""

from __future__ import annotations

import json

import pandas as pd

from .cohort import (
    AGREEMENT_COLUMNS,
    TRUTH_METRICS,
    agreement_stats,
    lax_dice_numeric,
    lax_dice_table,
    markdown_table,
    mean_sd,
    paired_phenotypes,
    phenotype_agreement,
    read_rows,
    summarize,
    truth_metrics_numeric,
    truth_metrics_table,
    with_split,
    write_table,
)


def frame_from_json(paths) -> pd.DataFrame:
    """One row per JSON record file (flat keys), in the given order."""
    rows = [json.loads(open(p).read()) for p in paths]
    return pd.DataFrame(rows)


__all__ = [
    "AGREEMENT_COLUMNS",
    "TRUTH_METRICS",
    "agreement_stats",
    "frame_from_json",
    "lax_dice_numeric",
    "lax_dice_table",
    "markdown_table",
    "mean_sd",
    "paired_phenotypes",
    "phenotype_agreement",
    "read_rows",
    "summarize",
    "truth_metrics_numeric",
    "truth_metrics_table",
    "with_split",
    "write_table",
]
