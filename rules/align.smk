# Slice-misalignment correction: SAX slices shifted in-plane to agree with the LAX views.


rule align:
    input:
        manifest("crop"),
    output:
        manifest("align"),
    log:
        f"{RESULTS}/logs/align/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/align/{{shard}}.tsv"
    conda:
        "../envs/cpu.yaml"
    threads: CPU_STAGE_THREADS
    resources:
        mem_mb=2000,
        runtime=shard_runtime(15),
    params:
        shard=shard_job(),
        method=ALIGN["method"],
        sax_thickness_mm=ALIGN["sax_thickness_mm"],
    script:
        "../workflow_scripts/align.py"
