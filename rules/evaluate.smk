# Per-subject evaluation of every reconstruction (LAX intersections, truth, phenotypes),
# and the reference phenotypes (acquired label stack, synthetic truth).


rule evaluate:
    input:
        recon=manifest("recon-{method}"),
        crop=manifest("crop"),  # the LAX labels
    output:
        manifest("eval-{method}"),
    wildcard_constraints:
        method=RECON_PATTERN,
    log:
        f"{RESULTS}/logs/evaluate/{{method}}/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{method}}/{{shard}}.tsv"
    params:
        shard=shard_job(EVAL_SUBJECTS),
        truth=HAS_TRUTH,
    conda:
        "../envs/cpu.yaml"
    script:
        "../workflow_scripts/evaluate.py"


rule reference_phenotypes:
    input:
        manifest("align"),
    output:
        manifest("reference"),
    log:
        f"{RESULTS}/logs/reference_phenotypes/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/reference_phenotypes/{{shard}}.tsv"
    params:
        shard=shard_job(EVAL_SUBJECTS),
        truth=HAS_TRUTH,
    conda:
        "../envs/cpu.yaml"
    script:
        "../workflow_scripts/reference_phenotypes.py"
