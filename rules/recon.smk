# High-resolution label volumes from the sparse SAX stack (ED and ES): baselines.


rule recon_baseline:
    input:
        labels=sax_label_stack,
    output:
        ed=f"{RESULTS}/recon/{{method}}/{{subject}}/label_ed.nii.gz",
        es=f"{RESULTS}/recon/{{method}}/{{subject}}/label_es.nii.gz",
        record=f"{RESULTS}/recon/{{method}}/{{subject}}/recon.json",
    wildcard_constraints:
        method="|".join(BASELINE_METHODS) or "NONE",
    log:
        f"{RESULTS}/logs/recon_baseline/{{method}}/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/recon_baseline/{{method}}/{{subject}}.tsv"
    params:
        target_spacing_mm=RECON["target_spacing_mm"],
    conda:
        "../envs/cpu.yaml"
    script:
        "../workflow_scripts/recon_baseline.py"
