# The subjects sheet and the input functions every rule shares.

from pathlib import Path

from cinerecon.io.sheet import SUBJECT_PATTERN, cohort_sheet
from cinerecon.io.subject import VIEWS
from cinerecon.tables.report import report_names

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
    outputs = [f"{RESULTS}/aligned/{s}/sa.nii.gz" for s in SUBJECTS]
    outputs += [f"{RESULTS}/crop/{s}/centring.json" for s in LABELLED]
    if LABELLED:
        outputs.append(f"{RESULTS}/tables/centring.tsv")
    if COHORT["kind"] == "synthetic":
        outputs.append(f"{RESULTS}/synthetic/subjects.tsv")
    if EVAL_SUBJECTS and RECON_METHODS:
        outputs.append(f"{RESULTS}/tables/lax_dice_LVC.md")
        outputs += [f"{RESULTS}/figures/lax_overlay_{m}.png" for m in RECON_METHODS]
    return outputs


# ---- reconstruction and evaluation ------------------------------------------------------
RECON = {"target_spacing_mm": 1.0, "baselines": ["nn", "linear", "sdf", "cpd"], **config.get("recon", {})}
EVALUATION = {"splits": ["test"], "overlay_subjects": 2, **config.get("evaluation", {})}
BASELINE_METHODS = list(RECON["baselines"])
RECON_METHODS = BASELINE_METHODS  # learned methods join this list as they land
RECON_PATTERN = "|".join(RECON_METHODS) or "NONE"
EVAL_SUBJECTS = [s for s in LABELLED if SHEET.loc[s, "split"] in EVALUATION["splits"]]
HAS_TRUTH = COHORT["kind"] == "synthetic"
LAX_VIEWS = [v for v in VIEWS if v != "sa"]


ALIGN = {"method": "intensity", **config.get("align", {})}


def align_inputs(wildcards):
    """Cropped SAX and LAX cines, plus labels when the label-based estimator is chosen."""
    crop = f"{RESULTS}/crop/{wildcards.subject}"
    inputs = {"sa": f"{crop}/sa.nii.gz", **{v: f"{crop}/{v}.nii.gz" for v in LAX_VIEWS}}
    if ALIGN["method"] == "labels":
        inputs["label_sa"] = f"{crop}/label_sa.nii.gz"
        inputs.update({f"label_{v}": f"{crop}/label_{v}.nii.gz" for v in LAX_VIEWS})
    return inputs


def sax_label_stack(wildcards):
    """The SAX label cine reconstructions start from: manual labels, slice-aligned."""
    return f"{RESULTS}/aligned/{wildcards.subject}/label_sa.nii.gz"


def recon_volumes(wildcards):
    folder = f"{RESULTS}/recon/{wildcards.method}/{wildcards.subject}"
    return {"ed": f"{folder}/label_ed.nii.gz", "es": f"{folder}/label_es.nii.gz",
            "record": f"{folder}/recon.json"}


# ---- segmentation network -----------------------------------------------------------------
SEG = {"enabled": True, "model": "tiny", "checkpoint": None, "epochs": 30, "batch_size": 16,
       "lr": 1e-3, "seed": 0, "frames": "ed_es", "frame_stride": 1, "predict_frames": "ed_es",
       **config.get("segmentation", {})}
SEG_TRAIN = [s for s in LABELLED if SHEET.loc[s, "split"] == "train"]
SEG_VAL = [s for s in LABELLED if SHEET.loc[s, "split"] == "val"]
SEG_CHECKPOINT = SEG["checkpoint"] or f"{RESULTS}/models/seg/{SEG['model']}/model.pt"
SEG_ON = bool(SEG["enabled"]) and (bool(SEG["checkpoint"]) or (bool(SEG_TRAIN) and bool(SEG_VAL)))
# DirectSeg is judged only on test subjects: validation subjects chose the best epoch.
SEG_EVAL_SUBJECTS = [s for s in EVAL_SUBJECTS if SHEET.loc[s, "split"] == "test"] if SEG_ON else []


def seg_inputs(wildcards):
    """Image, checkpoint and (when the subject has labels) the labels that give ED/ES."""
    inputs = {"image": f"{RESULTS}/aligned/{wildcards.subject}/sa.nii.gz", "model": SEG_CHECKPOINT}
    if wildcards.subject in LABELLED:
        inputs["labels"] = f"{RESULTS}/aligned/{wildcards.subject}/label_sa.nii.gz"
    return inputs


def evaluation_outputs():
    """Per-subject evaluation rows every cohort table needs."""
    out = {"lax": [], "truth": [], "phenotypes": [], "sax": []}
    for method in RECON_METHODS:
        for s in EVAL_SUBJECTS:
            out["lax"].append(f"{RESULTS}/eval/lax/{method}/{s}.parquet")
            out["phenotypes"].append(f"{RESULTS}/phenotypes/{method}/{s}.parquet")
            if HAS_TRUTH:
                out["truth"].append(f"{RESULTS}/eval/truth/{method}/{s}.parquet")
    out["sax"] = [f"{RESULTS}/eval/sax/directseg/{s}.parquet" for s in SEG_EVAL_SUBJECTS]
    out["phenotypes"] += [f"{RESULTS}/phenotypes/directseg/{s}.parquet" for s in SEG_EVAL_SUBJECTS]
    for s in EVAL_SUBJECTS:
        out["phenotypes"].append(f"{RESULTS}/phenotypes/labels/{s}.parquet")
        if HAS_TRUTH:
            out["phenotypes"].append(f"{RESULTS}/phenotypes/truth/{s}.parquet")
    return out
