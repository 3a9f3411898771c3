# SAX segmentation network: cohort-level training (GPU-tagged), per-subject inference,
# DirectSeg evaluation. The checkpoint is a declared input of inference, so replacing it
# reruns inference and everything downstream of it, and nothing else.


rule train_seg:
    input:
        images=expand(f"{RESULTS}/aligned/{{subject}}/sa.nii.gz", subject=SEG_TRAIN + SEG_VAL),
        labels=expand(f"{RESULTS}/aligned/{{subject}}/label_sa.nii.gz", subject=SEG_TRAIN + SEG_VAL),
    output:
        model=f"{RESULTS}/models/seg/{{seg_model}}/model.pt",
        history=f"{RESULTS}/models/seg/{{seg_model}}/history.tsv",
        curve=f"{RESULTS}/models/seg/{{seg_model}}/loss_curve.png",
    wildcard_constraints:
        seg_model="tiny|paper",
    log:
        f"{RESULTS}/logs/train_seg/{{seg_model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_seg/{{seg_model}}.tsv"
    resources:
        gpu=1,
    params:
        settings=SEG,
        train=SEG_TRAIN,
        val=SEG_VAL,
    conda:
        "../envs/gpu.yaml"
    script:
        "../workflow_scripts/train_seg.py"


rule seg_sax:
    input:
        unpack(seg_inputs),
    output:
        f"{RESULTS}/seg/{{subject}}/seg_sa.nii.gz",
    log:
        f"{RESULTS}/logs/seg_sax/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/seg_sax/{{subject}}.tsv"
    resources:
        gpu=1,
    params:
        frames=SEG["predict_frames"],
        batch_size=SEG["batch_size"] * 4,
    conda:
        "../envs/gpu.yaml"
    script:
        "../workflow_scripts/seg_sax.py"


rule eval_directseg:
    input:
        seg=f"{RESULTS}/seg/{{subject}}/seg_sa.nii.gz",
        labels=f"{RESULTS}/aligned/{{subject}}/label_sa.nii.gz",
    output:
        metrics=f"{RESULTS}/eval/sax/directseg/{{subject}}.parquet",
        phenotypes=f"{RESULTS}/phenotypes/directseg/{{subject}}.parquet",
    log:
        f"{RESULTS}/logs/eval_directseg/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/eval_directseg/{{subject}}.tsv"
    conda:
        "../envs/cpu.yaml"
    script:
        "../workflow_scripts/eval_directseg.py"
