"""The subjects sheet that drives the DAG: one row per subject with its split."""

from __future__ import annotations

import re

import pandas as pd

SUBJECT_PATTERN = r"[A-Za-z0-9_-]+"
SPLITS = ("train", "val", "test")


class SheetError(ValueError):
    """The subjects sheet cannot drive the DAG (bad IDs, duplicates, unknown splits)."""


def validate_sheet(sheet: pd.DataFrame, source: str = "subjects sheet") -> pd.DataFrame:
    """Check IDs, uniqueness and splits; return the sheet indexed by subject."""
    missing = {"subject", "split"} - set(sheet.columns)
    if missing:
        raise SheetError(f"{source}: missing column(s) {sorted(missing)}")
    sheet = sheet.copy()
    sheet["subject"] = sheet["subject"].astype(str)
    bad = [s for s in sheet["subject"] if not re.fullmatch(SUBJECT_PATTERN, s)]
    if bad:
        raise SheetError(f"{source}: subject IDs must match ^{SUBJECT_PATTERN}$: {bad[:5]}")
    dup = sheet.loc[sheet["subject"].duplicated(keep=False)]
    if len(dup):
        splits = dup.groupby("subject")["split"].apply(lambda s: sorted(set(s))).to_dict()
        raise SheetError(f"{source}: subjects listed more than once (splits must not overlap): "
                         f"{dict(list(splits.items())[:5])}")
    unknown = set(sheet["split"]) - set(SPLITS)
    if unknown:
        raise SheetError(f"{source}: unknown split value(s) {sorted(unknown)}; use {SPLITS}")
    return sheet.set_index("subject", drop=False)


def read_sheet(path) -> pd.DataFrame:
    """Read a TSV/CSV sheet (separator guessed from the extension)."""
    sep = "," if str(path).endswith(".csv") else "\t"
    return validate_sheet(pd.read_csv(path, sep=sep, dtype={"subject": str}), str(path))


def cohort_sheet(cohort: dict) -> pd.DataFrame:
    """The sheet of a configured cohort: generated for `synthetic`, read otherwise.

    Adds `has_labels` (bool): synthetic subjects always have labels; for NIfTI and DICOM
    cohorts the optional sheet column says which subjects have manual labels.
    """
    kind = cohort["kind"]
    if kind == "synthetic":
        from cinerecon.synth.cohort import make_sheet

        syn = cohort["synthetic"]
        sheet = make_sheet(syn["n_subjects"], syn["seed"],
                           syn.get("splits", {"train": 0.6, "val": 0.2, "test": 0.2}))
        sheet = validate_sheet(sheet, "synthetic cohort")
        sheet["has_labels"] = True
        return sheet
    if kind in ("nifti", "ukbb_dicom"):
        sheet = read_sheet(cohort[kind]["sheet"])
        if "has_labels" not in sheet.columns:
            sheet["has_labels"] = False
        sheet["has_labels"] = sheet["has_labels"].astype(str).str.lower().isin(["1", "true", "yes"])
        return sheet
    raise SheetError(f"unknown cohort kind {kind!r}")
