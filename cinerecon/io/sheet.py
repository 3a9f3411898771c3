"""The subjects sheet that drives the DAG: one row per subject with its split."""

from __future__ import annotations

import re

import pandas as pd

from cinerecon.labels import LAX_CONVENTIONS, lax_conventions

SUBJECT_PATTERN = r"[A-Za-z0-9_-]+"
SPLITS = ("train", "val", "test")


class SheetError(ValueError):
    """The subjects sheet cannot drive the DAG (no rows, blank or bad IDs, duplicates, unknown splits)."""


def _blank(values: pd.Series) -> pd.Series:
    return values.isna() | (values.astype(str).str.strip() == "")


def validate_sheet(sheet: pd.DataFrame, source: str = "subjects sheet", first_line: int = 2) -> pd.DataFrame:
    """Check rows, IDs, uniqueness and splits; return the sheet indexed by subject.

    first_line: the file line of the first row (2: below the header), for messages.
    """
    missing = {"subject", "split"} - set(sheet.columns)
    if missing:
        raise SheetError(f"{source}: missing column(s) {sorted(missing)}; found {list(sheet.columns)[:10]} "
                         f"(.csv files are read comma-separated, anything else tab-separated)")
    if not len(sheet):
        raise SheetError(f"{source}: no subjects (the sheet has no rows); a cohort needs at least one")
    sheet = sheet.reset_index(drop=True)
    blank = sheet.index[_blank(sheet["subject"])]
    if len(blank):
        raise SheetError(f"{source}: blank subject ID on line(s) {[int(i) + first_line for i in blank[:5]]}")
    sheet["subject"] = sheet["subject"].astype(str)
    bad = [s for s in sheet["subject"] if not re.fullmatch(SUBJECT_PATTERN, s)]
    if bad:
        raise SheetError(f"{source}: subject IDs must match ^{SUBJECT_PATTERN}$: {bad[:5]}")
    dup = sheet.loc[sheet["subject"].duplicated(keep=False)]
    if len(dup):
        splits = dup.groupby("subject")["split"].apply(lambda s: sorted(set(s.astype(str)))).to_dict()
        raise SheetError(f"{source}: subjects listed more than once (splits must not overlap): "
                         f"{dict(list(splits.items())[:5])}")
    blank = sheet.loc[_blank(sheet["split"]), "subject"]
    if len(blank):
        raise SheetError(f"{source}: blank split for subject(s) "
                         f"{dict(zip(blank[:5], [int(i) + first_line for i in blank.index[:5]]))} "
                         f"({{subject: line}}); use one of {SPLITS}")
    unknown = set(sheet["split"]) - set(SPLITS)
    if unknown:
        raise SheetError(f"{source}: unknown split value(s) {sorted(map(str, unknown))}; use {SPLITS}")
    return sheet.set_index("subject", drop=False)


def read_sheet(path) -> pd.DataFrame:
    """Read a TSV/CSV sheet (separator guessed from the extension); every column as text,
    only empty cells missing (so an ID such as "NA" stays an ID)."""
    sep = "," if str(path).endswith(".csv") else "\t"
    try:
        sheet = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise SheetError(f"{path}: empty file (a subjects sheet needs a header line "
                         f"subject<TAB>split[<TAB>has_labels...] and one row per subject)") from None
    return validate_sheet(sheet, str(path))


TRUE_VALUES, FALSE_VALUES = {"1", "true", "yes", "y"}, {"0", "false", "no", "n", "", "nan"}


def parse_has_labels(sheet: pd.DataFrame, source: str) -> pd.Series:
    """The optional `has_labels` column as bool (absent: no subject has manual labels);
    anything but yes/no, true/false or 1/0 is refused rather than read as 'no'."""
    if "has_labels" not in sheet.columns:
        return pd.Series(False, index=sheet.index)
    text = sheet["has_labels"].fillna("").astype(str).str.strip().str.lower()  # blank: no
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
    from cinerecon.config_checks import check_cohort

    check_cohort(cohort)  # the kind's block, split fractions, the sheet file and input folders
    kind = cohort["kind"]
    if kind == "synthetic":
        from cinerecon.synth.cohort import assign_labels, make_sheet

        syn = cohort["synthetic"]
        sheet = make_sheet(syn["n_subjects"], syn["seed"],
                           syn.get("splits", {"train": 0.6, "val": 0.2, "test": 0.2}))
        from cinerecon.synth.cohort import add_source_domain

        sheet = validate_sheet(sheet, "synthetic cohort")
        return add_source_domain(assign_labels(sheet, syn["seed"], syn.get("labels")), syn.get("source_domain"))
    if kind in ("nifti", "ukbb_dicom"):
        source = cohort[kind]["sheet"]
        sheet = read_sheet(source)
        sheet["has_labels"] = parse_has_labels(sheet, source)
        sheet["lax_labels"] = parse_lax_labels(sheet, source)
        sheet["domain"] = parse_domain(sheet, source)
        return sheet
    raise SheetError(f"unknown cohort kind {kind!r}")


DOMAINS = ("target", "source")


def parse_domain(sheet: pd.DataFrame, source: str) -> pd.Series:
    """The optional `domain` column: `target` (the domain the models train on; blank or
    absent) or `source` (another site's scanner, adapted by V-AMA before Gemini-GAN)."""
    if "domain" not in sheet.columns:
        return pd.Series("target", index=sheet.index)
    text = sheet["domain"].fillna("").astype(str).str.strip().str.lower().replace("", "target")
    bad = sheet.loc[~text.isin(DOMAINS), ["subject", "domain"]]
    if len(bad):
        raise SheetError(f"{source}: unknown domain value(s) {dict(zip(bad['subject'][:5], bad['domain'][:5]))} "
                         f"({{subject: value}}); use {DOMAINS} (blank: target)")
    return text


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


PRETRAINING_SPLITS = ("train", "val")


def pretraining_subjects(sheet: pd.DataFrame, splits=PRETRAINING_SPLITS) -> list[str]:
    """Subjects of `splits` in sheet order, labelled or not: what a generative model pre-trains
    on (appearance needs no labels; the papers pre-train on thousands of unlabelled UK Biobank
    subjects). The test split is refused: its subjects never enter a training set; nor do a
    second domain's (`domain` source), which only V-AMA sees."""
    splits = list(splits)
    if "test" in splits:
        raise ValueError("test subjects never enter a training set: remove 'test' from pretrain_splits")
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise ValueError(f"unknown split(s) {unknown} in pretrain_splits; use train and/or val")
    target = sheet["domain"] == "target" if "domain" in sheet.columns else True
    return list(sheet.index[sheet["split"].isin(splits) & target])
