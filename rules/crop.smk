# Heart-centred crops of every view (label-free centring), labels cropped identically.


rule crop:
    input:
        manifest("ingest"),
    output:
        manifest("crop"),
    log:
        f"{RESULTS}/logs/crop/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/crop/{{shard}}.tsv"
    conda:
        "../envs/cpu.yaml"
    threads: CPU_STAGE_THREADS
    resources:
        mem_mb=2000,
        runtime=shard_runtime(2),
    params:
        shard=shard_job(),
        sax_size=config["crop"]["sax_size"],
        lax_size=config["crop"]["lax_size"],
    script:
        "../workflow_scripts/crop.py"


rule centring_table:
    input:
        manifests("crop", LABELLED),
    output:
        in_report(f"{RESULTS}/tables/centring.tsv", "centring", "Cohort"),
    log:
        f"{RESULTS}/logs/centring_table.log",
    benchmark:
        f"{RESULTS}/benchmarks/centring_table.tsv"
    conda:
        "../envs/cpu.yaml"
    threads: TABLE_THREADS
    params:
        labelled=LABELLED,
    script:
        "../workflow_scripts/centring_table.py"
