# Every subject, labelled or not: phenotypes, cardiac output and QC flags from the predicted
# segmentation of every frame, reconstructions from predicted labels, and the cohort table
# (a row per subject and method). See cinerecon.cohort.


rule seg_record:
    input:
        manifest("seg"),
    output:
        manifest("cohort-seg"),
    log:
        f"{RESULTS}/logs/seg_record/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/seg_record/{{shard}}.tsv"
    conda:
        "../envs/cpu.yaml"
    threads: CPU_STAGE_THREADS
    resources:
        mem_mb=2000,
        runtime=shard_runtime(1),
    params:
        shard=shard_job(),
        qc=COHORT_PHENOTYPES["qc"],
    script:
        "../workflow_scripts/seg_record.py"


rule cohort_recon:
    input:
        manifest("cohort-seg"),
    output:
        manifest("cohort-recon-{method}"),
    log:
        f"{RESULTS}/logs/cohort_recon/{{method}}/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/cohort_recon/{{method}}/{{shard}}.tsv"
    wildcard_constraints:
        method="|".join(COHORT_RECON_METHODS) or "NONE",
    conda:
        "../envs/cpu.yaml"
    threads: CPU_STAGE_THREADS
    resources:
        mem_mb=2000,
        runtime=shard_runtime(2),
    params:
        shard=shard_job(),
        target_spacing_mm=RECON["target_spacing_mm"],
    script:
        "../workflow_scripts/cohort_recon.py"


rule cohort_generative:
    # phenotypes of the generative methods' reconstructions (results/recon/{method}/, every subject)
    input:
        recon=manifest("recon-{method}"),
        seg=manifest("cohort-seg"),
    output:
        manifest("cohort-recon-{method}"),
    log:
        f"{RESULTS}/logs/cohort_generative/{{method}}/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/cohort_generative/{{method}}/{{shard}}.tsv"
    wildcard_constraints:
        method=GENERATIVE_PATTERN,
    conda:
        "../envs/cpu.yaml"
    threads: CPU_STAGE_THREADS
    resources:
        mem_mb=2000,
        runtime=shard_runtime(1),
    params:
        shard=shard_job(),
    script:
        "../workflow_scripts/cohort_generative.py"


rule cohort_phenotypes:
    input:
        seg=manifests("cohort-seg"),
        recon=[manifests(f"cohort-recon-{m}") for m in COHORT_RECON_METHODS + COHORT_GENERATIVE],
        upstream=[manifests(stage) for stage in STATUS_STAGES],
        truth=manifests("synth") if HAS_TRUTH else [],
    output:
        [
            (
                in_report(path, Path(path).stem, "Cohort", table=Path(path).stem)
                if path.endswith((".html", "cohort_phenotypes.csv"))
                else path
            )
            for path in COHORT_TABLES
        ],
    log:
        f"{RESULTS}/logs/cohort_phenotypes.log",
    benchmark:
        f"{RESULTS}/benchmarks/cohort_phenotypes.tsv"
    conda:
        "../envs/cpu.yaml"
    threads: TABLE_THREADS
    params:
        sheet=SHEET[["subject", "split", "has_labels"]],
        methods=["seg"] + COHORT_RECON_METHODS + COHORT_GENERATIVE,
        truth=HAS_TRUTH,
        models=MODEL_FILES,  # named in the captions
    script:
        "../workflow_scripts/cohort_phenotypes.py"
