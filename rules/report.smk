# Snakemake's report (snakemake --report report.html, or report.zip): the outputs flagged
# with in_report() across rules/, captioned from report/, plus what the run was: its
# effective configuration and the checkpoints it used (category "Run").


rule run_record:
    input:
        models=list(MODEL_FILES.values()),
    output:
        configuration=in_report(f"{RESULTS}/report/configuration.tsv", "configuration", "Run"),
        models=in_report(f"{RESULTS}/report/models.tsv", "models", "Run"),
    log:
        f"{RESULTS}/logs/run_record.log",
    benchmark:
        f"{RESULTS}/benchmarks/run_record.tsv"
    conda:
        "../envs/cpu.yaml"
    threads: TABLE_THREADS
    params:
        config=config,
        names=list(MODEL_FILES),
    script:
        "../workflow_scripts/run_record.py"


# ---- QC pictures (QC_SUBJECTS, qc_subject_inputs: rules/common.smk)
rule qc_subject:
    input:
        qc_subject_inputs,
    output:
        picture=in_report(
            f"{RESULTS}/report/qc/{{subject}}.png",
            "qc_subject",
            "Quality control",
            "Subjects",
            subject="{subject}",
        ),
        record=f"{RESULTS}/report/qc/{{subject}}.json",
    log:
        f"{RESULTS}/logs/qc_subject/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/qc_subject/{{subject}}.tsv"
    wildcard_constraints:
        subject="|".join(QC_SUBJECTS) or "NONE",
    conda:
        "../envs/cpu.yaml"
    threads: TABLE_THREADS
    params:
        recon_method=QC_RECON,
        labelled=lambda w: w.subject in LABELLED,
        sax_thickness_mm=ALIGN["sax_thickness_mm"],
        align_method=ALIGN["method"],
    script:
        "../workflow_scripts/qc_subject.py"


rule qc_overview:
    input:
        align=manifests("align"),
        lax=[m for method in RECON_METHODS for m in manifests(f"eval-{method}", EVAL_SUBJECTS)],
        phenotypes=[f"{RESULTS}/tables/cohort_phenotypes.parquet"] if SEG_ON else [],
    output:
        picture=in_report(f"{RESULTS}/report/qc/overview.png", "qc_overview", "Quality control"),
        outliers=in_report(f"{RESULTS}/report/qc/outliers.tsv", "qc_outliers", "Quality control"),
    log:
        f"{RESULTS}/logs/qc_overview.log",
    benchmark:
        f"{RESULTS}/benchmarks/qc_overview.tsv"
    conda:
        "../envs/cpu.yaml"
    threads: TABLE_THREADS
    params:
        methods=RECON_METHODS,
        subjects=SUBJECTS,
        eval_subjects=EVAL_SUBJECTS,
    script:
        "../workflow_scripts/qc_overview.py"
