# Per-subject evaluation of every reconstruction (LAX intersections, truth, phenotypes),
# and the reference phenotypes (acquired label stack, synthetic truth).


rule evaluate:
    input:
        recon=manifest("recon-{method}"),
        crop=manifest("crop"),  # the LAX labels
        truth=[manifest("synth")] if HAS_TRUTH else [],  # the synthetic truth volumes
    output:
        manifest("eval-{method}"),
    log:
        f"{RESULTS}/logs/evaluate/{{method}}/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{method}}/{{shard}}.tsv"
    wildcard_constraints:
        method=RECON_PATTERN,
    conda:
        "../envs/cpu.yaml"
    threads: CPU_STAGE_THREADS
    resources:
        mem_mb=3000,
        runtime=shard_runtime(3),
    params:
        shard=shard_job(EVAL_SUBJECTS),
        truth=HAS_TRUTH,
    script:
        "../workflow_scripts/evaluate.py"


rule reference_phenotypes:
    input:
        aligned=manifest("align"),  # the label stack
        truth=[manifest("synth")] if HAS_TRUTH else [],  # the synthetic truth phenotypes
    output:
        manifest("reference"),
    log:
        f"{RESULTS}/logs/reference_phenotypes/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/reference_phenotypes/{{shard}}.tsv"
    conda:
        "../envs/cpu.yaml"
    threads: CPU_STAGE_THREADS
    resources:
        mem_mb=1000,
        runtime=shard_runtime(1),
    params:
        shard=shard_job(EVAL_SUBJECTS),
        truth=HAS_TRUTH,
    script:
        "../workflow_scripts/reference_phenotypes.py"


rule shard_evaluated:
    # One status row per subject of the shard over all of its evaluations. It also ties a
    # shard's evaluation jobs into one connected piece, which the SLURM profile submits as
    # one group job.
    input:
        evaluations=lambda wc: shard_evaluations(wc.shard),
    output:
        manifest("evaluated"),
    log:
        f"{RESULTS}/logs/shard_evaluated/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/shard_evaluated/{{shard}}.tsv"
    conda:
        "../envs/cpu.yaml"
    threads: TABLE_THREADS
    params:
        shard=shard_job(EVAL_SUBJECTS),
    script:
        "../workflow_scripts/shard_evaluated.py"
