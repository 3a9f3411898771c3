# Cohort level: the papers' tables and figures from the per-subject evaluation rows, and
# the status of every subject (which stage failed it, and why).

REPORT = report_names(
    HAS_TRUTH, bool(SEG_EVAL_SUBJECTS), bool(GENERATIVE_METHODS and SEG_EVAL_SUBJECTS)
)
# drawn against LAX labels with LV/RV where there are such subjects (not against atria-only ones)
OVERLAY_SUBJECTS = (LV_ON_LAX + [s for s in EVAL_SUBJECTS if s not in LV_ON_LAX])[
    : EVALUATION["overlay_subjects"]
]
# (caption in report/, category, subcategory) of each table stem and figure the report rule writes
REPORT_CAPTIONS = {
    **{
        f"lax_dice_{s}": ("lax_dice", "Paper tables", "LAX-intersection Dice")
        for s in ("LVC", "LVM", "RVC")
    },
    **{
        f"lax_dice_whole_{s}": ("lax_dice_whole", "Paper tables", "LAX-intersection Dice")
        for s in ("LVC", "LVM", "RVC")
    },
    "lax_dice_numeric": ("lax_dice_numeric", "Paper tables", "LAX-intersection Dice"),
    "phenotypes": ("phenotypes", "Paper tables", "Phenotypes"),
    "phenotype_agreement": ("phenotype_agreement", "Paper tables", "Phenotypes"),
    "truth_metrics": ("truth_metrics", "Paper tables", "Against the 3D truth"),
    "truth_metrics_numeric": ("truth_metrics", "Paper tables", "Against the 3D truth"),
    "seg_metrics": ("seg_metrics", "Paper tables", "Segmentation of the acquired slices"),
    "seg_metrics_numeric": ("seg_metrics", "Paper tables", "Segmentation of the acquired slices"),
    "image_quality": ("image_quality", "Paper tables", "Images"),
    "heldout_slices": ("heldout_slices", "Paper tables", "Images"),
    "dice_lax.png": ("dice_lax_figure", "Figures", "Dice and agreement"),
    "dice_truth.png": ("dice_truth_figure", "Figures", "Dice and agreement"),
    "bland_altman.png": ("bland_altman", "Figures", "Dice and agreement"),
}
STATUS_STAGES = (["synth"] if COHORT["kind"] == "synthetic" else []) + ["ingest", "crop", "align"]
STATUS_STAGES += ["seg"] if SEG_ON else []
STATUS_STAGES += (
    (["cohort-seg"] + [f"cohort-recon-{m}" for m in COHORT_RECON_METHODS + COHORT_GENERATIVE])
    if SEG_ON
    else []
)


rule report:
    input:
        **evaluation_manifests(),
    output:
        tables=[
            (in_report(path, *REPORT_CAPTIONS[stem], table=stem) if ext == "html" else path)
            for stem in REPORT["tables"]
            for ext in TABLE_FORMATS
            for path in [f"{RESULTS}/tables/{stem}.{ext}"]
        ],
        figures=[
            in_report(f"{RESULTS}/figures/{name}", *REPORT_CAPTIONS[name], figure=name)
            for name in REPORT["figures"]
        ],
    log:
        f"{RESULTS}/logs/report.log",
    benchmark:
        f"{RESULTS}/benchmarks/report.tsv"
    conda:
        "../envs/cpu.yaml"
    threads: TABLE_THREADS
    params:
        methods=RECON_METHODS,
        truth=HAS_TRUTH,
        method_order=BASELINE_METHODS
        + ["directseg", "wplus_segnet"]
        + GENERATIVE_METHODS
        + GEMINI_RECON
        + ["labels"],
        splits=SHEET.loc[EVAL_SUBJECTS, "split"].to_dict(),  # the `split` column of the tables
        models=MODEL_FILES,  # named in the captions
    script:
        "../workflow_scripts/report.py"


rule subject_status:
    input:
        [manifests(stage) for stage in STATUS_STAGES],
        [manifests(f"recon-{m}", EVAL_SUBJECTS) for m in RECON_METHODS],
        list(evaluation_manifests().values()),
    output:
        in_report(f"{RESULTS}/tables/subject_status.tsv", "subject_status", "Cohort"),
    log:
        f"{RESULTS}/logs/subject_status.log",
    benchmark:
        f"{RESULTS}/benchmarks/subject_status.tsv"
    conda:
        "../envs/cpu.yaml"
    threads: TABLE_THREADS
    params:
        subjects=SUBJECTS,
    script:
        "../workflow_scripts/subject_status.py"


rule lax_overlay:
    input:
        recon=manifests("recon-{method}", OVERLAY_SUBJECTS),
        crop=manifests("crop", OVERLAY_SUBJECTS),
    output:
        in_report(
            f"{RESULTS}/figures/lax_overlay_{{method}}.png",
            "lax_overlay",
            "Figures",
            "LAX overlays",
            method="{method}",
        ),
    log:
        f"{RESULTS}/logs/lax_overlay/{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/lax_overlay/{{method}}.tsv"
    wildcard_constraints:
        method=RECON_PATTERN,
    conda:
        "../envs/cpu.yaml"
    threads: TABLE_THREADS
    params:
        subjects=OVERLAY_SUBJECTS,
        views=LAX_VIEWS,
    script:
        "../workflow_scripts/lax_overlay.py"
