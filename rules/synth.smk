# The embedded default input: a synthetic UK-Biobank-like cohort with known truth.

SYNTH = COHORT.get("synthetic", {})


rule synth_sheet:
    output:
        f"{RESULTS}/synthetic/subjects.tsv",
    log:
        f"{RESULTS}/logs/synth_sheet.log",
    benchmark:
        f"{RESULTS}/benchmarks/synth_sheet.tsv"
    params:
        sheet=SHEET,
    conda:
        "../envs/cpu.yaml"
    script:
        "../workflow_scripts/synth_sheet.py"


rule synth_subject:
    output:
        **{
            name: f"{RESULTS}/synthetic/{{subject}}/{name}.nii.gz"
            for name in [*VIEWS, *(f"label_{v}" for v in VIEWS)]
        },
        truth_ed=f"{RESULTS}/synthetic/{{subject}}/truth/label_ed.nii.gz",
        truth_es=f"{RESULTS}/synthetic/{{subject}}/truth/label_es.nii.gz",
        truth_shifts=f"{RESULTS}/synthetic/{{subject}}/truth/shifts.tsv",
        truth_phenotypes=f"{RESULTS}/synthetic/{{subject}}/truth/phenotypes.json",
        truth_params=f"{RESULTS}/synthetic/{{subject}}/truth/params.json",
    log:
        f"{RESULTS}/logs/synth_subject/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/synth_subject/{{subject}}.tsv"
    params:
        seed=SYNTH.get("seed", 0),
        index=lambda wc: int(SHEET.loc[wc.subject, "index"]),
        acquisition=SYNTH.get("acquisition", {}),
    conda:
        "../envs/cpu.yaml"
    script:
        "../workflow_scripts/synth_subject.py"
