# High-resolution label volumes from the sparse SAX stack (ED and ES): baselines.


rule recon_baseline:
    input:
        manifest("align"),
    output:
        manifest("recon-{method}"),
    log:
        f"{RESULTS}/logs/recon_baseline/{{method}}/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/recon_baseline/{{method}}/{{shard}}.tsv"
    wildcard_constraints:
        method="|".join(BASELINE_METHODS) or "NONE",
    conda:
        "../envs/cpu.yaml"
    threads: CPU_STAGE_THREADS
    resources:
        mem_mb=2000,
        runtime=shard_runtime(2),
    params:
        shard=shard_job(EVAL_SUBJECTS),
        target_spacing_mm=RECON["target_spacing_mm"],
    script:
        "../workflow_scripts/recon_baseline.py"
