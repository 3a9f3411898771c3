# Validate each subject's cines (UK Biobank DICOM zips, or NIfTI files) and its labels,
# when the sheet says it has them, and write them in the canonical layout, nifti/{subject}/.


if FROM_DICOM:

    rule ingest_dicom:
        input:
            [manifest("synth")] if COHORT["kind"] == "synthetic" else [],
        output:
            manifest("ingest"),
        log:
            f"{RESULTS}/logs/ingest/{{shard}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/ingest/{{shard}}.tsv"
        conda:
            "../envs/cpu.yaml"
        threads: CPU_STAGE_THREADS
        resources:
            mem_mb=3000,
            runtime=shard_runtime(4),
        params:
            shard=shard_job(),
            zips=lambda wc: {s: dicom_zips(s) for s in SHARDS[wc.shard]},
            label_folders=lambda wc: {s: raw_folder(s) for s in SHARDS[wc.shard]},
            raw_fingerprint=raw_fingerprint,
        script:
            "../workflow_scripts/ingest_dicom.py"

else:

    rule ingest:
        input:
            [manifest("synth")] if COHORT["kind"] == "synthetic" else [],
        output:
            manifest("ingest"),
        log:
            f"{RESULTS}/logs/ingest/{{shard}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/ingest/{{shard}}.tsv"
        conda:
            "../envs/cpu.yaml"
        threads: CPU_STAGE_THREADS
        resources:
            mem_mb=2000,
            runtime=shard_runtime(2),
        params:
            shard=shard_job(),
            sources=lambda wc: {s: raw_folder(s) for s in SHARDS[wc.shard]},
            raw_fingerprint=raw_fingerprint,
        script:
            "../workflow_scripts/ingest.py"
