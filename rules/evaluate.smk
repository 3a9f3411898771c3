# Per-subject evaluation of every reconstruction: LAX intersections, truth, phenotypes.


rule eval_lax:
    input:
        unpack(recon_volumes),
        **{v: f"{RESULTS}/crop/{{subject}}/label_{v}.nii.gz" for v in LAX_VIEWS},
    output:
        f"{RESULTS}/eval/lax/{{method}}/{{subject}}.parquet",
    wildcard_constraints:
        method=RECON_PATTERN,
    log:
        f"{RESULTS}/logs/eval_lax/{{method}}/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/eval_lax/{{method}}/{{subject}}.tsv"
    params:
        views=LAX_VIEWS,
    conda:
        "../envs/cpu.yaml"
    script:
        "../workflow_scripts/eval_lax.py"


rule eval_truth:
    input:
        unpack(recon_volumes),
        truth_ed=f"{RESULTS}/synthetic/{{subject}}/truth/label_ed.nii.gz",
        truth_es=f"{RESULTS}/synthetic/{{subject}}/truth/label_es.nii.gz",
    output:
        f"{RESULTS}/eval/truth/{{method}}/{{subject}}.parquet",
    wildcard_constraints:
        method=RECON_PATTERN,
    log:
        f"{RESULTS}/logs/eval_truth/{{method}}/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/eval_truth/{{method}}/{{subject}}.tsv"
    conda:
        "../envs/cpu.yaml"
    script:
        "../workflow_scripts/eval_truth.py"


rule phenotypes_recon:
    input:
        unpack(recon_volumes),
    output:
        f"{RESULTS}/phenotypes/{{method}}/{{subject}}.parquet",
    wildcard_constraints:
        method=RECON_PATTERN,
    log:
        f"{RESULTS}/logs/phenotypes_recon/{{method}}/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/phenotypes_recon/{{method}}/{{subject}}.tsv"
    conda:
        "../envs/cpu.yaml"
    script:
        "../workflow_scripts/phenotypes_recon.py"


rule phenotypes_labels:
    input:
        labels=sax_label_stack,
    output:
        f"{RESULTS}/phenotypes/labels/{{subject}}.parquet",
    log:
        f"{RESULTS}/logs/phenotypes_labels/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/phenotypes_labels/{{subject}}.tsv"
    conda:
        "../envs/cpu.yaml"
    script:
        "../workflow_scripts/phenotypes_labels.py"


rule phenotypes_truth:
    input:
        f"{RESULTS}/synthetic/{{subject}}/truth/phenotypes.json",
    output:
        f"{RESULTS}/phenotypes/truth/{{subject}}.parquet",
    log:
        f"{RESULTS}/logs/phenotypes_truth/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/phenotypes_truth/{{subject}}.tsv"
    conda:
        "../envs/cpu.yaml"
    script:
        "../workflow_scripts/phenotypes_truth.py"
