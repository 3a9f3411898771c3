"""The cohort table (a row per subject and method, failed subjects included) and, where a
truth is known (the synthetic cohort), its agreement with the truth per subject group."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cinerecon.cohort.files import COHORT_COLUMNS
from cinerecon.tables.cohort import phenotype_agreement

TABLE_COLUMNS = ("subject", "split", "has_labels", "method", "status", "reason", "qc_pass", "qc_flags",
                 *COHORT_COLUMNS)
AGREEMENT_PHENOTYPES = tuple(c for c in COHORT_COLUMNS if c not in ("heart_rate_bpm", "ed_frame"))


def cohort_table(sheet: pd.DataFrame, rows: pd.DataFrame, records: dict, status: pd.DataFrame,
                 methods: list[str]) -> pd.DataFrame:
    """One row per subject (sheet order) and method.

    sheet: subject, split, has_labels; rows: phenotype rows (subject, method, COHORT_COLUMNS);
    records: {subject: segmentation record (qc_pass, qc_flags)}; status: batch.subject_status.
    A subject without a row for a method keeps it, with NaN values, status `failed` (or
    `not run`) and the reason of the stage that stopped it.
    """
    by_key = {(r["subject"], r["method"]): r for r in rows.to_dict("records")} if len(rows) else {}
    status = status.set_index("subject") if len(status) else status
    out = []
    for subject, split, has_labels in sheet[["subject", "split", "has_labels"]].itertuples(index=False):
        record = records.get(subject, {})
        flags = record.get("qc_flags")
        for method in methods:
            row = by_key.get((subject, method))
            if row is not None:
                state, reason = "ok", ""
            elif subject in status.index and status.loc[subject, "status"] != "ok":
                state = status.loc[subject, "status"]
                reason = f"{status.loc[subject, 'stage']}: {status.loc[subject, 'reason']}".strip(": ")
            else:
                state, reason = "failed", f"no {method} phenotypes"
            values = {c: (row or {}).get(c, np.nan) for c in COHORT_COLUMNS}
            out.append({"subject": subject, "split": split, "has_labels": bool(has_labels), "method": method,
                        "status": state, "reason": reason,
                        "qc_pass": record.get("qc_pass") if record else None,
                        "qc_flags": "; ".join(flags) if flags else "", **values})
    return pd.DataFrame(out, columns=list(TABLE_COLUMNS))


def truth_rows(paths: dict) -> pd.DataFrame:
    """Rows of method `truth` from the synthetic truth (phenotypes.json per subject)."""
    rows = []
    for subject, path in paths.items():
        truth = json.loads(Path(path).read_text())
        rows.append({"subject": subject, "method": "truth",
                     **{c: float(truth.get(c, np.nan)) for c in AGREEMENT_PHENOTYPES}})
    return pd.DataFrame(rows)


def cohort_agreement(table: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Bias, limits of agreement and MAE of every method against the truth, per group:
    subjects without manual labels (the cohort study's case), with them, all, and all that
    pass QC. ES is compared in frames."""
    ok = table[table["status"] == "ok"]
    groups = {"unlabelled": ok[~ok["has_labels"]], "labelled": ok[ok["has_labels"]], "all": ok,
              "all, QC pass": ok[ok["qc_pass"] == True]}  # noqa: E712 (None = no record)
    parts = []
    for group, rows in groups.items():
        rows = rows[["subject", "method", *AGREEMENT_PHENOTYPES]]
        reference = truth[truth["subject"].isin(set(rows["subject"]))]
        if not len(rows) or not len(reference):
            continue
        agreement = phenotype_agreement(pd.concat([rows, reference], ignore_index=True), "truth",
                                        list(AGREEMENT_PHENOTYPES), list(dict.fromkeys(rows["method"])))
        agreement.loc[agreement["phenotype"] == "es_frame", "unit"] = "frames"
        agreement.loc[agreement["phenotype"].isin(["LVCO", "RVCO"]), "unit"] = "L/min"
        parts.append(agreement.assign(group=group))
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, ignore_index=True)
    return out[["group", *[c for c in out.columns if c != "group"]]]
