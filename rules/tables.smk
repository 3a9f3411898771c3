# Cohort level: the papers' tables and figures from the per-subject evaluation rows.

REPORT = report_names(HAS_TRUTH, bool(SEG_EVAL_SUBJECTS))
OVERLAY_SUBJECTS = EVAL_SUBJECTS[: EVALUATION["overlay_subjects"]]


rule report:
    input:
        **{k: v for k, v in evaluation_outputs().items()},
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
    params:
        method_order=RECON_METHODS + ["directseg", "labels"],
    conda:
        "../envs/cpu.yaml"
    script:
        "../workflow_scripts/report.py"


rule lax_overlay:
    input:
        recon=expand(
            f"{RESULTS}/recon/{{{{method}}}}/{{subject}}/label_ed.nii.gz",
            subject=OVERLAY_SUBJECTS,
        ),
        images=expand(
            f"{RESULTS}/crop/{{subject}}/{{view}}.nii.gz",
            subject=OVERLAY_SUBJECTS,
            view=LAX_VIEWS,
        ),
        labels=expand(
            f"{RESULTS}/crop/{{subject}}/label_{{view}}.nii.gz",
            subject=OVERLAY_SUBJECTS,
            view=LAX_VIEWS,
        ),
    output:
        f"{RESULTS}/figures/lax_overlay_{{method}}.png",
    wildcard_constraints:
        method=RECON_PATTERN,
    log:
        f"{RESULTS}/logs/lax_overlay/{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/lax_overlay/{{method}}.tsv"
    params:
        subjects=OVERLAY_SUBJECTS,
        views=LAX_VIEWS,
    conda:
        "../envs/cpu.yaml"
    script:
        "../workflow_scripts/lax_overlay.py"
