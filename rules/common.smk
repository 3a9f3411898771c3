# The subjects sheet and the input functions every rule shares.

from pathlib import Path

from cinerecon.io.sheet import SUBJECT_PATTERN, cohort_sheet
from cinerecon.io.subject import VIEWS

RESULTS = config["results"]
COHORT = config["cohort"]
SHEET = cohort_sheet(COHORT)
SUBJECTS = list(SHEET.index)
LABELLED = list(SHEET.index[SHEET["has_labels"]])
VIEW_PATTERN = "|".join(VIEWS)


wildcard_constraints:
    subject=SUBJECT_PATTERN,


def raw_folder(wildcards):
    """Where a subject's input NIfTI files live (generated or the user's data)."""
    if COHORT["kind"] == "synthetic":
        return f"{RESULTS}/synthetic/{wildcards.subject}"
    return str(Path(COHORT["nifti"]["root"]) / wildcards.subject)


def raw_images(wildcards):
    """Existing input cines; a missing file fails that subject alone, in the script."""
    folder = raw_folder(wildcards)
    if COHORT["kind"] == "synthetic":
        return [f"{folder}/{view}.nii.gz" for view in VIEWS]
    return [p for p in (f"{folder}/{view}.nii.gz" for view in VIEWS) if Path(p).exists()]


def raw_labels(wildcards):
    folder = raw_folder(wildcards)
    files = [f"{folder}/label_{view}.nii.gz" for view in VIEWS]
    if COHORT["kind"] == "synthetic":
        return files
    return [p for p in files if Path(p).exists()]


def per_view(pattern):
    """{view: path} outputs for every view, from a pattern with a {view} field."""
    return {view: pattern.format(view=view) for view in VIEWS}


def final_outputs():
    outputs = [f"{RESULTS}/crop/{s}/crop.json" for s in SUBJECTS]
    outputs += [f"{RESULTS}/crop/{s}/centring.json" for s in LABELLED]
    if LABELLED:
        outputs.append(f"{RESULTS}/tables/centring.tsv")
    if COHORT["kind"] == "synthetic":
        outputs.append(f"{RESULTS}/synthetic/subjects.tsv")
    return outputs
