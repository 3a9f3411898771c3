# The embedded default input: a synthetic UK-Biobank-like cohort with known truth.

SYNTH = COHORT.get("synthetic", {})


rule synth_sheet:
    output:
        f"{RESULTS}/synthetic/subjects.tsv",
    log:
        f"{RESULTS}/logs/synth_sheet.log",
    benchmark:
        f"{RESULTS}/benchmarks/synth_sheet.tsv"
    conda:
        "../envs/cpu.yaml"
    threads: TABLE_THREADS
    params:
        sheet=SHEET,
    script:
        "../workflow_scripts/synth_sheet.py"


rule synth:
    output:
        manifest("synth"),
    log:
        f"{RESULTS}/logs/synth/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/synth/{{shard}}.tsv"
    conda:
        "../envs/cpu.yaml"
    threads: CPU_STAGE_THREADS
    resources:
        mem_mb=3000,
        runtime=shard_runtime(10),
    params:
        shard=shard_job(),
        seed=SYNTH.get("seed", 0),
        index=lambda wc: SHEET.loc[SHARDS[wc.shard], "index"].astype(int).to_dict(),
        # per subject: the second domain's subjects have their own scanner and population
        acquisition=lambda wc: {s: acquisition_of(s) for s in SHARDS[wc.shard]},
        dicom=SYNTH.get("dicom"),
        label_frames=SYNTH.get("labels", {}).get("frames", "ed_es"),
    script:
        "../workflow_scripts/synth.py"
