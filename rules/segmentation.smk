# SAX segmentation network: cohort-level training and shard-batched inference, both
# GPU-tagged (resources: gpu=1), and DirectSeg evaluation. The checkpoint is a declared
# input of inference, so replacing it reruns inference and what depends on it, only.


rule train_seg:
    input:
        manifests("align", SEG_TRAIN + SEG_VAL),
    output:
        model=f"{RESULTS}/models/seg/{{seg_model}}/model.pt",
        history=f"{RESULTS}/models/seg/{{seg_model}}/history.tsv",
        curve=f"{RESULTS}/models/seg/{{seg_model}}/loss_curve.png",
    log:
        f"{RESULTS}/logs/train_seg/{{seg_model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_seg/{{seg_model}}.tsv"
    wildcard_constraints:
        seg_model="tiny|paper",
    conda:
        "../envs/gpu.yaml"
    threads: GPU_THREADS
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=training_runtime(240),
    params:
        settings=settings_for(SEG, SEG_TRAINING_KEYS),
        train=SEG_TRAIN,
        val=SEG_VAL,
    script:
        "../workflow_scripts/train_seg.py"


rule seg:
    input:
        upstream=manifest("align"),
        model=SEG_CHECKPOINT,
    output:
        manifest("seg"),
    log:
        f"{RESULTS}/logs/seg/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/seg/{{shard}}.tsv"
    conda:
        "../envs/gpu.yaml"
    threads: GPU_THREADS
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=shard_runtime(2),
    params:
        shard=shard_job(),
        frames=SEG["predict_frames"],
        batch_size=SEG["batch_size"] * 4,
    script:
        "../workflow_scripts/seg.py"


rule eval_directseg:
    input:
        segmented=manifest("seg"),
        aligned=manifest("align"),  # the manual labels
    output:
        manifest("directseg"),
    log:
        f"{RESULTS}/logs/eval_directseg/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/eval_directseg/{{shard}}.tsv"
    conda:
        "../envs/cpu.yaml"
    threads: CPU_STAGE_THREADS
    params:
        shard=shard_job(SEG_EVAL_SUBJECTS),
    script:
        "../workflow_scripts/eval_directseg.py"
