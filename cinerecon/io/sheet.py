"""The subjects sheet that drives the DAG: one row per subject with its split."""

from __future__ import annotations

import re

import pandas as pd

from cinerecon.labels import LAX_CONVENTIONS, lax_conventions

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


TRUE_VALUES, FALSE_VALUES = {"1", "true", "yes", "y"}, {"0", "false", "no", "n", "", "nan"}


def parse_has_labels(sheet: pd.DataFrame, source: str) -> pd.Series:
    """The optional `has_labels` column as bool (absent: no subject has manual labels);
    anything but yes/no, true/false or 1/0 is refused rather than read as 'no'."""
    if "has_labels" not in sheet.columns:
        return pd.Series(False, index=sheet.index)
    text = sheet["has_labels"].astype(str).str.strip().str.lower()
    bad = sheet.loc[~text.isin(TRUE_VALUES | FALSE_VALUES), ["subject", "has_labels"]]
    if len(bad):
        raise SheetError(f"{source}: column has_labels must be yes/no, true/false or 1/0; "
                         f"got {dict(zip(bad['subject'][:5], bad['has_labels'][:5]))}")
    return text.isin(TRUE_VALUES)


def parse_lax_labels(sheet: pd.DataFrame, source: str) -> pd.Series:
    """The optional `lax_labels` column: a subject's LAX label convention (cinerecon.labels),
    "" for the cohort's declared one; "none" for subjects without manual labels."""
    values = (sheet["lax_labels"].fillna("").astype(str).str.strip() if "lax_labels" in sheet.columns
              else pd.Series("", index=sheet.index))
    bad = sheet.loc[~values.isin(["", *LAX_CONVENTIONS]), "subject"]
    if len(bad):
        raise SheetError(f"{source}: column lax_labels must be one of {sorted(LAX_CONVENTIONS)} or empty; "
                         f"got {dict(zip(bad[:5], values[bad.index][:5]))}")
    return values.where(sheet["has_labels"], "none")


def cohort_sheet(cohort: dict) -> pd.DataFrame:
    """The sheet of a configured cohort: generated for `synthetic`, read otherwise.

    Adds `has_labels` (bool, whether the subject has manual labels) and `lax_labels` (its
    LAX label convention, "" for the cohort's: see `lax_of`). Synthetic cohorts label a
    fraction of each split (cinerecon.synth.cohort.assign_labels); NIfTI and DICOM cohorts
    read the optional sheet columns.
    """
    kind = cohort["kind"]
    if kind == "synthetic":
        from cinerecon.synth.cohort import assign_labels, make_sheet

        syn = cohort["synthetic"]
        sheet = make_sheet(syn["n_subjects"], syn["seed"],
                           syn.get("splits", {"train": 0.6, "val": 0.2, "test": 0.2}))
        sheet = validate_sheet(sheet, "synthetic cohort")
        return assign_labels(sheet, syn["seed"], syn.get("labels"))
    if kind in ("nifti", "ukbb_dicom"):
        source = cohort[kind]["sheet"]
        sheet = read_sheet(source)
        sheet["has_labels"] = parse_has_labels(sheet, source)
        sheet["lax_labels"] = parse_lax_labels(sheet, source)
        return sheet
    raise SheetError(f"unknown cohort kind {kind!r}")


def cohort_lax_convention(cohort: dict):
    """The LAX label convention a cohort declares (a name, or {view: name}); default `ukbb`."""
    kind = cohort["kind"]
    if kind == "synthetic":
        from cinerecon.synth.cohort import UKBB_LABELS

        return {**UKBB_LABELS, **(cohort["synthetic"].get("labels") or {})}["lax"]
    return cohort.get(kind, {}).get("lax_labels", "ukbb")


def lax_of(sheet: pd.DataFrame, cohort: dict) -> dict[str, dict[str, str]]:
    """{subject: {view: convention}} for the subjects with manual labels."""
    default = lax_conventions(cohort_lax_convention(cohort))
    return {s: (lax_conventions(value) if value else default)
            for s, value in sheet.loc[sheet["has_labels"], "lax_labels"].items()}
