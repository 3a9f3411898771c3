# The subjects sheet, its shards and the input functions every rule shares.
#
# Per-subject stages run as shard jobs (cinerecon.batch): one job per stage and shard of
# `batch.subjects_per_shard` subjects, writing every subject's files in the layout of
# DESIGN.md (cinerecon.layout) and one manifest, results/shards/{stage}/{shard}.tsv,
# which is all the DAG sees. Cohort-level rules read the manifests.

import math
from pathlib import Path

from snakemake.logging import logger

from cinerecon.batch import (
    SHARD_PATTERN,
    make_shards,
    qc_subjects,
    shard_size_advice,
    stat_fingerprint,
)
from cinerecon.config_checks import check_workflow_config
from cinerecon.io.sheet import PRETRAINING_SPLITS, SUBJECT_PATTERN, cohort_sheet, lax_of
from cinerecon.io.sheet import pretraining_subjects as sheet_pretraining_subjects
from cinerecon.io.subject import VIEWS
from cinerecon.latent.names import deeprecon_variant
from cinerecon.layout import LAX_VIEWS
from cinerecon.tables.cohort import TABLE_FORMATS
from cinerecon.tables.report import report_names
from cinerecon.workflow import gpu_plan, visible_gpus

# `config` is the effective configuration (Snakefile): config/presets/{preset}.yaml with the
# user's --configfile/--config merged over it. Both presets set every key that the section
# dicts below give a fallback for, so those fallbacks never decide a run's value
# (tests/test_config_presets.py checks it for the paper preset).
RESULTS = config["results"]
COHORT = config["cohort"]
SHEET = cohort_sheet(COHORT)
SUBJECTS = list(SHEET.index)
LABELLED = list(SHEET.index[SHEET["has_labels"]])
# The domain every model trains on and every table but domain adaptation judges; `source`
# subjects (another site's scanner) are processed like any other and adapted by V-AMA.
TARGET_DOMAIN = set(SHEET.index[SHEET["domain"] == "target"])
# {subject: split}: the subject lists below filter on it (a dict lookup; SHEET.loc per subject
# cost 14 s of a 50,000-subject plan)
SPLIT_OF = SHEET["split"].to_dict()
# {subject: {view: convention}} of the manual LAX labels (cinerecon.labels.LAX_CONVENTIONS)
LAX_OF = lax_of(SHEET, COHORT)
BATCH = {"subjects_per_shard": 100, **config.get("batch", {})}
SHARDS = make_shards(SUBJECTS, BATCH["subjects_per_shard"])
SHARD_OF = {s: shard for shard, members in SHARDS.items() for s in members}
if workflow.is_main_process and (
    advice := shard_size_advice(len(SUBJECTS), BATCH["subjects_per_shard"])
):
    logger.warning(advice)


wildcard_constraints:
    subject=SUBJECT_PATTERN,
    shard=SHARD_PATTERN,


def settings_for(section, keys):
    """The keys of a config section that a job reads, as its params, so that changing another key
    (an inference setting, for a training rule) does not rerun it."""
    return {k: section[k] for k in keys if k in section}


def training_runtime(minutes):
    """A training job's `runtime` (minutes), doubled, tripled... with each attempt, up to
    `training.max_runtime_minutes` (a partition's time limit: a longer request would never be
    scheduled): a job killed at its time limit resumes from its saved state
    (cinerecon.models.resume), so several attempts add up to a training of any length."""
    cap = (config.get("training") or {}).get("max_runtime_minutes")

    def runtime(wildcards, attempt):
        return min(minutes * attempt, cap) if cap else minutes * attempt

    return runtime


def pretraining_subjects(section):
    """Subjects of the splits a generative model pre-trains on (`pretrain_splits`, default every
    non-test split), labelled or not (cinerecon.io.sheet.pretraining_subjects)."""
    return sheet_pretraining_subjects(SHEET, section.get("pretrain_splits", PRETRAINING_SPLITS))


def shard_runtime(seconds_per_subject, minimum=10):
    """A shard job's `runtime` (minutes): 3x the CPU seconds measured per subject, times
    the shard's size, so a cluster time limit follows batch.subjects_per_shard."""

    def runtime(wildcards, attempt):
        n = len(SHARDS[wildcards.shard])
        return max(minimum, math.ceil(3 * seconds_per_subject * n / 60)) * attempt

    return runtime


def manifest(stage, shard="{shard}"):
    return f"{RESULTS}/shards/{stage}/{shard}.tsv"


def shards_with(subjects):
    """Shards holding at least one of `subjects`, in shard order."""
    wanted = {SHARD_OF[s] for s in subjects}
    return [shard for shard in SHARDS if shard in wanted]


def manifests(stage, subjects=None):
    # every shard without a pass over every subject (this runs for dozens of stages)
    shards = SHARDS if subjects is None else shards_with(subjects)
    return [manifest(stage, shard) for shard in shards]


def shard_job(subset=None):
    """params.shard of a shard rule: its members (within `subset`), which have manual labels
    and the conventions of their LAX labels."""
    keep = None if subset is None else set(subset)

    def members(wildcards):
        subjects = [s for s in SHARDS[wildcards.shard] if keep is None or s in keep]
        labelled = [s for s in subjects if s in LABELLED_SET]
        return {"subjects": subjects, "labelled": labelled, "lax": {s: LAX_OF[s] for s in labelled}}

    return members


LABELLED_SET = set(LABELLED)


SYNTH_DICOM = COHORT["kind"] == "synthetic" and COHORT.get("synthetic", {}).get("dicom") is not None
FROM_DICOM = COHORT["kind"] == "ukbb_dicom" or SYNTH_DICOM


RAW_ROOT = {
    "synthetic": f"{RESULTS}/synthetic",
    "nifti": COHORT.get("nifti", {}).get("root"),
    "ukbb_dicom": COHORT.get("ukbb_dicom", {}).get("labels_root") or "labels-not-configured",
}[COHORT["kind"]]


def acquisition_of(subject):
    """A synthetic subject's acquisition settings: the second domain's have their own scanner
    and population (cinerecon.synth.cohort.source_acquisition)."""
    from cinerecon.synth.cohort import source_acquisition

    synthetic = COHORT.get("synthetic", {})
    if SHEET.loc[subject, "domain"] == "source":
        return source_acquisition(synthetic.get("acquisition"), synthetic.get("source_domain"))
    return synthetic.get("acquisition", {})


def raw_folder(subject):
    """Where a subject's input NIfTI files (or, for DICOM cohorts, its label files) live."""
    return f"{RAW_ROOT}/{subject}"


def dicom_zips(subject):
    """A subject's cine zips: UK Biobank fields 20209 (short axis) and 20208 (long axis)."""
    if SYNTH_DICOM:
        folder, instance = f"{RESULTS}/synthetic/{subject}/dicom", 2
    else:
        folder, instance = COHORT["ukbb_dicom"]["root"], COHORT["ukbb_dicom"].get("instance", 2)
    return [f"{folder}/{subject}_{field}_{instance}_0.zip" for field in (20209, 20208)]


def raw_fingerprint(wildcards):
    """Changes when any raw input file of the shard changes, so only that shard reruns.

    (Declaring every raw file as an input would cost the DAG ~0.3 ms per file.)
    """
    if COHORT["kind"] == "synthetic":
        return "synthetic"  # the synth manifest is an input instead
    files = []
    for s in SHARDS[wildcards.shard]:
        images = dicom_zips(s) if FROM_DICOM else [f"{raw_folder(s)}/{v}.nii.gz" for v in VIEWS]
        labels = [f"{raw_folder(s)}/label_{v}.nii.gz" for v in VIEWS] if s in LABELLED_SET else []
        files += images + labels
    return stat_fingerprint(files)


# ---- reconstruction and evaluation ------------------------------------------------------
RECON = {
    "target_spacing_mm": 1.0,
    "baselines": ["nn", "linear", "sdf", "cpd"],
    **config.get("recon", {}),
}
EVALUATION = {"splits": ["test"], "overlay_subjects": 2, **config.get("evaluation", {})}
BASELINE_METHODS = list(RECON["baselines"])
EVAL_SUBJECTS = [s for s in LABELLED if SPLIT_OF[s] in EVALUATION["splits"] and s in TARGET_DOMAIN]
# Subjects whose LAX views carry LV/RV labels (Table 2 needs them), e.g. the papers' annotated set
LV_ON_LAX = [s for s in EVAL_SUBJECTS if "full" in LAX_OF[s].values()]
HAS_TRUTH = COHORT["kind"] == "synthetic"


ALIGN = {"method": "intensity", "sax_thickness_mm": 8.0, **config.get("align", {})}


# ---- segmentation network -----------------------------------------------------------------
SEG = {
    "enabled": True,
    "model": "tiny",
    "checkpoint": None,
    "epochs": 30,
    "batch_size": 16,
    "lr": 1e-3,
    "seed": 0,
    "frames": "ed_es",
    "frame_stride": 1,
    "predict_frames": "all",
    **config.get("segmentation", {}),
}
# What training a U-Net reads (cinerecon.models.seg_files.train_from_files); predict_frames,
# checkpoint and enabled are inference's and the DAG's
SEG_TRAINING_KEYS = (
    "model",
    "epochs",
    "batch_size",
    "lr",
    "seed",
    "frames",
    "frame_stride",
    "precision",
)
SEG_TRAIN = [s for s in LABELLED if SPLIT_OF[s] == "train" and s in TARGET_DOMAIN]
SEG_VAL = [s for s in LABELLED if SPLIT_OF[s] == "val" and s in TARGET_DOMAIN]
SEG_CHECKPOINT = SEG["checkpoint"] or f"{RESULTS}/models/seg/{SEG['model']}/model.pt"
SEG_ON = bool(SEG["enabled"]) and (bool(SEG["checkpoint"]) or (bool(SEG_TRAIN) and bool(SEG_VAL)))
# DirectSeg is judged only on test subjects: validation subjects chose the best epoch.
SEG_EVAL_SUBJECTS = [s for s in EVAL_SUBJECTS if SPLIT_OF[s] == "test"] if SEG_ON else []


# ---- DeepRecon: StyleGAN2 latent space ----------------------------------------------------
DEEPRECON = {
    "enabled": False,
    "preset": "tiny",
    "image_size": None,
    "frame_stride": 1,
    "gan_steps": 2000,
    "gan_lr": 0.002,
    "encoder_steps": 1000,
    "encoder_lr": 0.001,
    "batch_size": 16,
    "seed": 0,
    "inversion": {},
    "seg_epochs": SEG["epochs"],
    **config.get("deeprecon", {}),
}
DEEPRECON_ON = bool(DEEPRECON["enabled"]) and SEG_ON and bool(SEG_TRAIN) and bool(SEG_VAL)
# What G and E training read (cinerecon.latent.deeprecon_files); inversion and motion are inference's
GAN_TRAINING_KEYS = (
    "preset",
    "image_size",
    "frame_stride",
    "gan_steps",
    "gan_lr",
    "batch_size",
    "seed",
    "precision",
)
ENCODER_TRAINING_KEYS = (
    "preset",
    "frame_stride",
    "encoder_steps",
    "encoder_lr",
    "batch_size",
    "seed",
    "precision",
)
INVERSION_STEPS = sorted(int(n) for n in DEEPRECON["inversion"].get("steps", [0, 1000, 10000]))
DEEPRECON_VARIANTS = {n: deeprecon_variant(n) for n in INVERSION_STEPS} if DEEPRECON_ON else {}
LATENT_METHODS = list(DEEPRECON_VARIANTS.values())
LATENT_PATTERN = "|".join(LATENT_METHODS) or "NONE"
DEEPRECON_MODELS = f"{RESULTS}/models/deeprecon/{DEEPRECON['preset']}"
# G and E pre-train on every subject of deeprecon.pretrain_splits (the paper: 6,846 subjects,
# mostly unlabelled)
DEEPRECON_PRETRAIN = pretraining_subjects(DEEPRECON)
# Inverted and reconstructed: every subject (the cohort table has a row per subject and
# method; unlabelled subjects' ED/ES slices come from the network's segmentation)
INVERT_SUBJECTS = SUBJECTS if DEEPRECON_ON else []


# Motion adaptation (Eq. 3): the default pair is the first two test subjects; any other pair
# can be asked for as results/motion/{source}_to_{target}/curves.tsv.
MOTION = {
    "source": None,
    "target": None,
    "frame_stride": 5,
    "strength": 1.0,
    **DEEPRECON.get("motion", {}),
}
MOTION_PAIR = [
    MOTION["source"] or (SEG_EVAL_SUBJECTS[:1] or [None])[0],
    MOTION["target"] or (SEG_EVAL_SUBJECTS[1:2] or [None])[0],
]


def motion_aligned(wildcards):
    """The align manifests of a motion-adaptation pair."""
    pair = [wildcards.source, wildcards.target]
    unknown = [s for s in pair if s not in SHARD_OF]
    if unknown:
        raise ValueError(f"motion adaptation: subject(s) {unknown} not in the cohort sheet")
    return manifests("align", pair)


MOTION_DIR = f"{RESULTS}/motion/{{source}}_to_{{target}}"
MOTION_OUTPUTS = (
    [f"{RESULTS}/motion/{MOTION_PAIR[0]}_to_{MOTION_PAIR[1]}/curves.tsv"]
    if DEEPRECON_ON and None not in MOTION_PAIR
    else []
)


# ---- DMCVR: morphology-guided diffusion autoencoder (and the DiffAE ablation) ------------
DMCVR = {
    "enabled": False,
    "preset": "tiny",
    "methods": ["dmcvr", "diffae"],
    "frame_stride": 1,
    "steps": 20000,
    "batch_size": 16,
    "lr": 1e-4,
    "seed": 0,
    "ddim_steps": 50,
    "refine": 0,
    "clip_x0": True,
    "inference_batch_size": 64,
    "subjects_per_pass": 8,
    "model": {},
    **config.get("dmcvr", {}),
}
DMCVR_ON = bool(DMCVR["enabled"]) and SEG_ON and bool(SEG_TRAIN)
# What diffusion training reads (cinerecon.latent.dmcvr.train_diffusion_files); ddim_steps, refine,
# clip_x0, inference_batch_size and subjects_per_pass are inference's
DIFFUSION_TRAINING_KEYS = (
    "preset",
    "frame_stride",
    "steps",
    "batch_size",
    "lr",
    "seed",
    "model",
    "precision",
)
DMCVR_PRETRAIN = pretraining_subjects(DMCVR)  # every subject of dmcvr.pretrain_splits
check_workflow_config(
    config, SHEET, workflow
)  # strict inputs: refuse what the *_ON switches would drop
DIFFUSION_METHODS = list(DMCVR["methods"]) if DMCVR_ON else []
DIFFUSION_PATTERN = "|".join(DIFFUSION_METHODS) or "NONE"


def diffusion_model(method):
    return f"{RESULTS}/models/{method}/{DMCVR['preset']}/model.pt"


# ---- Gemini-GAN: joint 3D super-resolution and segmentation, V-AMA domain adaptation ----
GEMINI = {
    "enabled": False,
    "preset": "tiny",
    "methods": ["gemini_gan", "unet_seg", "unet_image"],
    "in_slices": 16,
    "xy_factor": 1,
    "slice_mm": 2.0,
    "steps": 2000,
    "batch_size": 4,
    "lr": 1e-4,
    "weight_decay": 1e-6,
    "crop": None,
    "seed": 0,
    "model": {},
    "pretrain_splits": ["train", "val"],
    **config.get("gemini_gan", {}),
}
VAMA = {
    "enabled": True,
    "preset": "tiny",
    "target_steps": 1000,
    "source_steps": 1000,
    "batch_size": 16,
    "lr": 2e-4,
    "beta1": 0.5,
    "seed": 0,
    "model": {},
    **GEMINI.get("vama", {}),
}
# Training needs paired 3D truth: the synthetic cohort's (cinerecon.synth.highres)
GEMINI_ON = bool(GEMINI["enabled"]) and HAS_TRUTH and SEG_ON
GEMINI_METHODS = list(GEMINI["methods"]) if GEMINI_ON else []
GEMINI_TRAINING_KEYS = (
    "preset",
    "in_slices",
    "xy_factor",
    "slice_mm",
    "steps",
    "batch_size",
    "lr",
    "weight_decay",
    "crop",
    "seed",
    "model",
)
GEMINI_TRAIN = (
    pretraining_subjects(GEMINI) if GEMINI_ON else []
)  # with their 3D truth, labelled or not
# Judged against the 3D truth: every test subject, labelled or not; the source domain's by V-AMA
SR_SUBJECTS = (
    [s for s in SUBJECTS if SPLIT_OF[s] == "test" and s in TARGET_DOMAIN] if GEMINI_ON else []
)
DA_SUBJECTS = (
    [s for s in SUBJECTS if SPLIT_OF[s] == "test" and s not in TARGET_DOMAIN]
    if "gemini_gan" in GEMINI_METHODS
    else []
)
VAMA_ON = (
    GEMINI_ON and "gemini_gan" in GEMINI_METHODS and bool(VAMA["enabled"]) and bool(DA_SUBJECTS)
)
# V-AMA adapts every source subject (unsupervised: no truth is read) to the training subjects' look
VAMA_SOURCE = [s for s in SUBJECTS if s not in TARGET_DOMAIN] if VAMA_ON else []
GEMINI_RECON = ["gemini_gan"] if "gemini_gan" in GEMINI_METHODS and EVAL_SUBJECTS else []


def gemini_model(method):
    return f"{RESULTS}/models/{method}/{GEMINI['preset']}/model.pt"


# ---- the whole-heart masked autoencoder: representation, phenotypes, segmentation -------------
MAE = {
    "enabled": False,
    "preset": "tiny",
    "model": {},
    "size": 128,
    "downsample": 1,
    "n_frames": 50,
    "pretrain_splits": ["train", "val"],
    "finetune_splits": ["train", "val"],
    "seed": 0,
    "robustness": {"pairs": 9},
    **config.get("mae", {}),
}
# Every target-domain subject gets a tensor file; pre-training reads the non-test ones, labelled
# or not; the heads and the ResNet the labelled ones of mae.finetune_splits; tables the test ones
MAE_SUBJECTS = [s for s in SUBJECTS if s in TARGET_DOMAIN]
MAE_PRETRAIN = [s for s in pretraining_subjects(MAE) if s in TARGET_DOMAIN]
MAE_FINETUNE = [s for s in LABELLED if SPLIT_OF[s] in MAE["finetune_splits"] and s in TARGET_DOMAIN]
MAE_TEST = [s for s in MAE_SUBJECTS if SPLIT_OF[s] == "test"]
MAE_ON = (
    bool(MAE["enabled"]) and SEG_ON and bool(MAE_PRETRAIN) and bool(MAE_FINETUNE) and bool(MAE_TEST)
)
MAE_INPUT_KEYS = ("preset", "model", "size", "downsample", "n_frames", "seed")
MAE_HEADS = ("phenotypes", "segmentation", "resnet")
MAE_TABLES = (
    [
        f"{RESULTS}/tables/mae_{name}.{ext}"
        for name in ("phenotypes", "segmentation", "robustness")
        for ext in ("md", "html")
    ]
    if MAE_ON
    else []
)


def mae_model(kind):
    """The pre-trained MAE (kind `pretrained`) or a phase-II model: phenotypes, segmentation, resnet."""
    name = "mae" if kind == "pretrained" else f"mae_{kind}"
    return f"{RESULTS}/models/{name}/{MAE['preset']}/model.pt"


# Methods that generate images: Table 1 rows (segmentation of the acquired slices they
# rebuild), PSNR/SSIM and held-out slices.
GENERATIVE_METHODS = LATENT_METHODS + DIFFUSION_METHODS
# The held-out-slice evaluation: the generative methods and the linear baseline
HELDOUT_METHODS = (["linear"] + GENERATIVE_METHODS) if GENERATIVE_METHODS else []
RECON_METHODS = BASELINE_METHODS + GENERATIVE_METHODS + GEMINI_RECON
RECON_PATTERN = "|".join(RECON_METHODS) or "NONE"


def evaluation_manifests():
    """Manifests of every per-subject evaluation the cohort tables read."""
    out = {f"eval_{m}": manifests(f"eval-{m}", EVAL_SUBJECTS) for m in RECON_METHODS}
    out["reference"] = manifests("reference", EVAL_SUBJECTS)
    out["directseg"] = manifests("directseg", SEG_EVAL_SUBJECTS)
    out["latent_rows"] = [
        m for method in GENERATIVE_METHODS for m in manifests(f"slices-{method}", SEG_EVAL_SUBJECTS)
    ]
    out["wplus_segnet"] = (
        manifests("segrows-wplus_segnet", SEG_EVAL_SUBJECTS) if LATENT_METHODS else []
    )
    out["heldout"] = [
        m for method in HELDOUT_METHODS for m in manifests(f"heldout-{method}", SEG_EVAL_SUBJECTS)
    ]
    return out


def shard_evaluations(shard):
    """The evaluation manifests of one shard's reconstructions (every method), references and
    the linear held-out slices (so SLURM's `evaluate` group takes them in too).

    (DirectSeg is left out: it waits for the segmentation network, and on SLURM it runs in
    the GPU job's group; the cohort status table covers it.)
    """
    stages = (
        [f"eval-{m}" for m in RECON_METHODS]
        + ["reference"]
        + (["heldout-linear"] if HELDOUT_METHODS else [])
    )
    return [manifest(stage, shard) for stage in stages]


# ---- cohort outputs: every subject, labelled or not, from the predicted segmentation --------
COHORT_PHENOTYPES = {
    "recon_methods": BASELINE_METHODS,
    "qc": {},
    **config.get("cohort_phenotypes", {}),
}
COHORT_RECON_METHODS = list(COHORT_PHENOTYPES["recon_methods"]) if SEG_ON else []
COHORT_GENERATIVE = GENERATIVE_METHODS if SEG_ON else []  # reconstructed for every subject
GENERATIVE_PATTERN = "|".join(COHORT_GENERATIVE) or "NONE"
COHORT_TABLES = (
    [f"{RESULTS}/tables/cohort_phenotypes.{ext}" for ext in ("parquet", "csv")]
    + ([f"{RESULTS}/tables/cohort_agreement.{ext}" for ext in TABLE_FORMATS] if HAS_TRUTH else [])
    if SEG_ON
    else []
)


# ---- model checkpoints: every network this run trains or loads, named ---------------------
MODEL_FILES = {}
if SEG_ON:
    MODEL_FILES["seg"] = SEG_CHECKPOINT
if LATENT_METHODS:
    MODEL_FILES["deeprecon_generator"] = f"{DEEPRECON_MODELS}/generator.pt"
    MODEL_FILES["deeprecon_encoder"] = f"{DEEPRECON_MODELS}/encoder.pt"
    MODEL_FILES.update({f"{m}_seg": f"{RESULTS}/models/{m}/seg.pt" for m in LATENT_METHODS})
    if SEG_EVAL_SUBJECTS:
        MODEL_FILES["wplus_segnet"] = f"{RESULTS}/models/wplus_segnet/seg.pt"
MODEL_FILES.update({m: diffusion_model(m) for m in DIFFUSION_METHODS})
if SR_SUBJECTS:
    MODEL_FILES.update({m: gemini_model(m) for m in GEMINI_METHODS})
if VAMA_ON:
    MODEL_FILES["vama"] = f"{RESULTS}/models/vama/{VAMA['preset']}/model.pt"
if MAE_ON:
    MODEL_FILES.update({f"mae_{k}": mae_model(k) for k in ("pretrained",) + MAE_HEADS})


# ---- Snakemake's report (snakemake --report report.html): captions in report/ -------------
def in_report(path, caption, category, subcategory=None, **labels):
    """`path` flagged for the report, captioned by report/{caption}.rst."""
    return report(
        path,
        caption=f"../report/{caption}.rst",
        category=category,
        subcategory=subcategory,
        labels=labels or None,
    )


# ---- QC pictures: a seeded choice of subjects (evaluation.qc_subjects; 0: all) and the cohort
QC_SUBJECTS = qc_subjects(SUBJECTS, EVALUATION.get("qc_subjects", 4))
QC_RECON = (
    ("linear" if "linear" in COHORT_RECON_METHODS else COHORT_RECON_METHODS[0])
    if COHORT_RECON_METHODS
    else None
)


def qc_subject_inputs(wildcards):
    """The subject's shard manifests of every stage its picture draws (those this run has)."""
    stages = ["crop", "align"] + (["cohort-seg"] if SEG_ON else [])
    stages += [f"cohort-recon-{QC_RECON}"] if QC_RECON else []
    return [manifest(stage, SHARD_OF[wildcards.subject]) for stage in stages]


def final_outputs():
    outputs = manifests("align")
    if LABELLED:
        outputs.append(f"{RESULTS}/tables/centring.tsv")
    if COHORT["kind"] == "synthetic":
        outputs.append(f"{RESULTS}/synthetic/subjects.tsv")
    if SEG_ON:
        outputs += manifests("seg")
    outputs += COHORT_TABLES
    if EVAL_SUBJECTS and RECON_METHODS:
        # every report table and figure (REPORT: rules/tables.smk), so `all` asks for what
        # the report shows
        outputs += [f"{RESULTS}/tables/{stem}.html" for stem in REPORT["tables"]]
        outputs += [f"{RESULTS}/figures/{name}" for name in REPORT["figures"]]
        outputs += manifests("evaluated", EVAL_SUBJECTS)
        outputs += [f"{RESULTS}/figures/lax_overlay_{m}.png" for m in RECON_METHODS]
    if SR_SUBJECTS:
        outputs += [f"{RESULTS}/tables/super_resolution.{ext}" for ext in ("md", "html")]
        outputs += (
            [f"{RESULTS}/tables/domain_adaptation.{ext}" for ext in ("md", "html")]
            if DA_SUBJECTS
            else []
        )
    outputs += MOTION_OUTPUTS
    outputs += MAE_TABLES
    outputs.append(f"{RESULTS}/tables/subject_status.tsv")
    outputs += [f"{RESULTS}/report/{name}.tsv" for name in ("configuration", "models")]
    outputs += [f"{RESULTS}/report/qc/{s}.png" for s in QC_SUBJECTS]
    outputs += [f"{RESULTS}/report/qc/overview.png"]
    return outputs


# ---- CPU threads per job ---------------------------------------------------------------------
# Every rule declares one of these as its `threads`. Each job's script passes them on to
# cinerecon.workflow.use_threads (torch, BLAS and OpenMP pools); on SLURM they become the
# job's --cpus-per-task (profiles/slurm); locally Snakemake caps them at --cores. Change them
# here for a site, or per rule with --set-threads RULENAME=N (or `set-threads` in a profile).
TABLE_THREADS = 1  # cohort tables, figures, status: pandas and matplotlib on one core
# Per-shard CPU stages (synth, ingest, crop, align, baselines, evaluation, cohort records):
# scipy.ndimage, scipy.optimize, elementwise numpy and pycpd, all on one core (a 2nd thread
# left align at 15 s and the CPD baseline at 0.6 s per subject), so one CPU per job and
# more jobs side by side; raise it if a stage gains multithreaded work.
CPU_STAGE_THREADS = 1
# GPU-tagged rules (resources gpu=1): on a cluster or a machine with GPUs, the process
# feeding the GPU plus data-loading workers (8); on a local run with no GPU visible they are
# CPU jobs, one thread each. A local run's `gpu` limit is the GPUs visible (nvidia-smi,
# CUDA_VISIBLE_DEVICES) unless --resources gpu=N says otherwise (cinerecon.workflow.gpu_plan).
GPU_THREADS, _gpu_limit = gpu_plan(
    workflow.local_exec and workflow.is_main_process and not workflow.remote_exec,
    "gpu" in workflow.global_resources,
    visible_gpus() if workflow.local_exec and workflow.is_main_process else 0,
)
if _gpu_limit is not None:
    workflow.register_resource("gpu", _gpu_limit)
