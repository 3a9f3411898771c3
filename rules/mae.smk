# The whole-heart masked autoencoder (Zhang et al. 2024): every subject's 6 SAX + 3 LAX planes
# in one tensor file, pre-training on every non-test subject (labelled or not), phase-II heads
# (phenotypes, segmentation) and the ResNet comparison on the labelled ones, the test
# subjects' rows and the paper's tables. GPU-tagged; every checkpoint is a declared input.


rule mae_inputs:
    input:
        aligned=manifest("align"),
        crop=manifest("crop"),  # the LAX views and their labels
        seg=manifest("seg"),  # the LV base of unlabelled subjects; DirectSeg's row
        synth=[manifest("synth")] if HAS_TRUTH else [],  # the phenotype truth
    output:
        manifest("mae-inputs"),
    log:
        f"{RESULTS}/logs/mae_inputs/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/mae_inputs/{{shard}}.tsv"
    conda:
        "../envs/cpu.yaml"
    threads: CPU_STAGE_THREADS
    resources:
        mem_mb=2000,
        runtime=shard_runtime(5),
    params:
        shard=shard_job(MAE_SUBJECTS),
        settings=settings_for(MAE, ("size", "downsample", "n_frames")),
        truth=HAS_TRUTH,
    script:
        "../workflow_scripts/mae_inputs.py"


rule train_mae:
    input:
        manifests("mae-inputs", MAE_PRETRAIN),
    output:
        model=mae_model("pretrained"),
        history=f"{RESULTS}/models/mae/{MAE['preset']}/history.tsv",
    log:
        f"{RESULTS}/logs/train_mae/pretrained.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_mae/pretrained.tsv"
    conda:
        "../envs/gpu.yaml"
    threads: GPU_THREADS
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=training_runtime(3 * 24 * 60),
    params:
        subjects=MAE_PRETRAIN,
        settings=settings_for(MAE, MAE_INPUT_KEYS + ("pretrain",)),
    script:
        "../workflow_scripts/train_mae.py"


rule finetune_mae:
    # phenotypes and segmentation start from the pre-trained encoder; the ResNet from scratch
    input:
        data=manifests("mae-inputs", MAE_FINETUNE),
        pretrained=lambda w: [] if w.head == "resnet" else [mae_model("pretrained")],
    output:
        model=f"{RESULTS}/models/mae_{{head}}/{MAE['preset']}/model.pt",
        history=f"{RESULTS}/models/mae_{{head}}/{MAE['preset']}/history.tsv",
    log:
        f"{RESULTS}/logs/train_mae/{{head}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_mae/{{head}}.tsv"
    wildcard_constraints:
        head="|".join(MAE_HEADS),
    conda:
        "../envs/gpu.yaml"
    threads: GPU_THREADS
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=training_runtime(2 * 24 * 60),
    params:
        subjects=MAE_FINETUNE,
        # (the ResNet reads neither the MAE's preset nor its model overrides)
        settings=lambda w: settings_for(
            MAE,
            (
                ("size", "downsample", "n_frames", "seed", "resnet")
                if w.head == "resnet"
                else MAE_INPUT_KEYS + (w.head,)
            ),
        ),
    script:
        "../workflow_scripts/finetune_mae.py"


rule mae_evaluate:
    input:
        upstream=manifest("mae-inputs"),
        models=[mae_model(kind) for kind in ("pretrained",) + MAE_HEADS],
    output:
        manifest("mae-eval"),
    log:
        f"{RESULTS}/logs/mae_evaluate/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/mae_evaluate/{{shard}}.tsv"
    conda:
        "../envs/gpu.yaml"
    threads: GPU_THREADS
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=shard_runtime(5),
    params:
        shard=shard_job(MAE_TEST),
        settings=settings_for(MAE, ("seed", "robustness")),
    script:
        "../workflow_scripts/mae_evaluate.py"


rule mae_tables:
    input:
        manifests("mae-eval", MAE_TEST),
    output:
        **{
            f"{name}_html": in_report(
                f"{RESULTS}/tables/mae_{name}.html",
                f"mae_{name}",
                "Paper tables",
                "Whole-heart MAE",
                table=f"mae_{name}",
            )
            for name in ("phenotypes", "segmentation", "robustness")
        },
        phenotypes=f"{RESULTS}/tables/mae_phenotypes.md",
        segmentation=f"{RESULTS}/tables/mae_segmentation.md",
        robustness=f"{RESULTS}/tables/mae_robustness.md",
    log:
        f"{RESULTS}/logs/mae_tables.log",
    benchmark:
        f"{RESULTS}/benchmarks/mae_tables.tsv"
    conda:
        "../envs/cpu.yaml"
    threads: TABLE_THREADS
    params:
        models={m: MODEL_FILES[m] for m in MODEL_FILES if m.startswith("mae_")},
        subjects=MAE_TEST,
    script:
        "../workflow_scripts/mae_tables.py"
