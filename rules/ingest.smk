# Validate a subject's NIfTI cines and write them in the canonical layout.


rule ingest:
    input:
        raw_images,
    output:
        **per_view(f"{RESULTS}/nifti/{{{{subject}}}}/{{view}}.nii.gz"),
        report=f"{RESULTS}/nifti/{{subject}}/ingest.json",
    log:
        f"{RESULTS}/logs/ingest/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/ingest/{{subject}}.tsv"
    params:
        folder=raw_folder,
    conda:
        "../envs/cpu.yaml"
    script:
        "../workflow_scripts/ingest.py"


rule ingest_labels:
    input:
        validated=f"{RESULTS}/nifti/{{subject}}/ingest.json",  # images passed validation
        labels=raw_labels,
    output:
        **per_view(f"{RESULTS}/nifti/{{{{subject}}}}/label_{{view}}.nii.gz"),
    log:
        f"{RESULTS}/logs/ingest_labels/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/ingest_labels/{{subject}}.tsv"
    params:
        folder=raw_folder,
    conda:
        "../envs/cpu.yaml"
    script:
        "../workflow_scripts/ingest_labels.py"
