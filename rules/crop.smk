# Heart-centred crops of every view (label-free centring), labels cropped identically.


rule crop:
    input:
        **per_view(f"{RESULTS}/nifti/{{{{subject}}}}/{{view}}.nii.gz"),
    output:
        **per_view(f"{RESULTS}/crop/{{{{subject}}}}/{{view}}.nii.gz"),
        record=f"{RESULTS}/crop/{{subject}}/crop.json",
    log:
        f"{RESULTS}/logs/crop/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/crop/{{subject}}.tsv"
    params:
        sax_size=config["crop"]["sax_size"],
        lax_size=config["crop"]["lax_size"],
    conda:
        "../envs/cpu.yaml"
    script:
        "../workflow_scripts/crop.py"


rule crop_labels:
    input:
        **per_view(f"{RESULTS}/nifti/{{{{subject}}}}/label_{{view}}.nii.gz"),
        record=f"{RESULTS}/crop/{{subject}}/crop.json",
    output:
        **per_view(f"{RESULTS}/crop/{{{{subject}}}}/label_{{view}}.nii.gz"),
        centring=f"{RESULTS}/crop/{{subject}}/centring.json",
    log:
        f"{RESULTS}/logs/crop_labels/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/crop_labels/{{subject}}.tsv"
    conda:
        "../envs/cpu.yaml"
    script:
        "../workflow_scripts/crop_labels.py"


rule centring_table:
    input:
        expand(f"{RESULTS}/crop/{{subject}}/centring.json", subject=LABELLED),
    output:
        f"{RESULTS}/tables/centring.tsv",
    log:
        f"{RESULTS}/logs/centring_table.log",
    benchmark:
        f"{RESULTS}/benchmarks/centring_table.tsv"
    conda:
        "../envs/cpu.yaml"
    script:
        "../workflow_scripts/centring_table.py"
