"""What a run was: its effective configuration and the model checkpoints it used, as tables
for Snakemake's report (category "Run")."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

CONFIG_COLUMNS = ["key", "value"]
MODEL_COLUMNS = ["model", "path", "sha256", "bytes"]


def config_rows(config: dict, prefix: str = "") -> pd.DataFrame:
    """One row per leaf of the configuration: dotted key, value (lists and empty mappings as
    JSON, so every value reads back unambiguously)."""
    rows = []

    def walk(node, key):
        if isinstance(node, dict) and node:
            for k in node:
                walk(node[k], f"{key}.{k}" if key else str(k))
        else:
            value = json.dumps(node) if isinstance(node, (list, tuple, dict)) or node is None else str(node)
            rows.append((key, value))

    walk(config, prefix)
    return pd.DataFrame(rows, columns=CONFIG_COLUMNS)


def sha256_of(path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def model_rows(models: dict) -> pd.DataFrame:
    """One row per named checkpoint: its path, SHA-256 and size, so a table in the report says
    exactly which weights made it (no time stamps: the same weights give the same bytes)."""
    rows = [(name, str(path), sha256_of(path), Path(path).stat().st_size) for name, path in models.items()]
    return pd.DataFrame(rows, columns=MODEL_COLUMNS)
