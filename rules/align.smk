# Slice-misalignment correction: SAX slices shifted in-plane to agree with the LAX views.


rule align:
    input:
        unpack(align_inputs),
    output:
        sa=f"{RESULTS}/aligned/{{subject}}/sa.nii.gz",
        shifts=f"{RESULTS}/aligned/{{subject}}/shifts.tsv",
        report=f"{RESULTS}/aligned/{{subject}}/align.json",
    log:
        f"{RESULTS}/logs/align/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/align/{{subject}}.tsv"
    params:
        method=ALIGN["method"],
        views=LAX_VIEWS,
    conda:
        "../envs/cpu.yaml"
    script:
        "../workflow_scripts/align.py"


rule align_labels:
    input:
        labels=f"{RESULTS}/crop/{{subject}}/label_sa.nii.gz",
        shifts=f"{RESULTS}/aligned/{{subject}}/shifts.tsv",
    output:
        f"{RESULTS}/aligned/{{subject}}/label_sa.nii.gz",
    log:
        f"{RESULTS}/logs/align_labels/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/align_labels/{{subject}}.tsv"
    conda:
        "../envs/cpu.yaml"
    script:
        "../workflow_scripts/align_labels.py"
