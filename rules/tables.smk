# Cohort level: the papers' tables and figures from the per-subject evaluation rows, and
# the status of every subject (which stage failed it, and why).

REPORT = report_names(
    HAS_TRUTH, bool(SEG_EVAL_SUBJECTS), bool(GENERATIVE_METHODS and SEG_EVAL_SUBJECTS)
)
# drawn against LAX labels with LV/RV where there are such subjects (not against atria-only ones)
OVERLAY_SUBJECTS = (LV_ON_LAX + [s for s in EVAL_SUBJECTS if s not in LV_ON_LAX])[
    : EVALUATION["overlay_subjects"]
]
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
            f"{RESULTS}/tables/{stem}.{ext}"
            for stem in REPORT["tables"]
            for ext in ("parquet", "csv", "md")
        ],
        figures=[f"{RESULTS}/figures/{name}" for name in REPORT["figures"]],
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
    script:
        "../workflow_scripts/report.py"


rule subject_status:
    input:
        [manifests(stage) for stage in STATUS_STAGES],
        [manifests(f"recon-{m}", EVAL_SUBJECTS) for m in RECON_METHODS],
        list(evaluation_manifests().values()),
    output:
        f"{RESULTS}/tables/subject_status.tsv",
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
        f"{RESULTS}/figures/lax_overlay_{{method}}.png",
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
