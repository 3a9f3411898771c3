# DeepRecon (Chang et al., MICCAI 2022): StyleGAN2 G and W+ encoder E trained on the
# pre-training subjects' cines (deeprecon.pretrain_splits, labelled or not), hybrid inversion of every ED/ES slice (variants by
# step count), a Seg U-Net trained on G(w*), and 3D volumes by lerp in W+ between adjacent
# slices. Training, inversion and generation are GPU-tagged; checkpoints are inputs.


rule train_stylegan2:
    input:
        manifests("align", DEEPRECON_PRETRAIN),
    output:
        generator=f"{DEEPRECON_MODELS}/generator.pt",
        history=f"{DEEPRECON_MODELS}/gan_history.tsv",
        samples=f"{DEEPRECON_MODELS}/samples.png",
    log:
        f"{RESULTS}/logs/train_stylegan2.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_stylegan2.tsv"
    conda:
        "../envs/gpu.yaml"
    threads: GPU_THREADS
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=training_runtime(24 * 60),
    params:
        subjects=DEEPRECON_PRETRAIN,
        settings=settings_for(DEEPRECON, GAN_TRAINING_KEYS),
    script:
        "../workflow_scripts/train_stylegan2.py"


rule train_encoder:
    input:
        aligned=manifests("align", DEEPRECON_PRETRAIN),
        generator=f"{DEEPRECON_MODELS}/generator.pt",
        seg=SEG_CHECKPOINT,  # its features are the perceptual distance
    output:
        encoder=f"{DEEPRECON_MODELS}/encoder.pt",
        history=f"{DEEPRECON_MODELS}/encoder_history.tsv",
    log:
        f"{RESULTS}/logs/train_encoder.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_encoder.tsv"
    conda:
        "../envs/gpu.yaml"
    threads: GPU_THREADS
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=training_runtime(12 * 60),
    params:
        subjects=DEEPRECON_PRETRAIN,
        settings=settings_for(DEEPRECON, ENCODER_TRAINING_KEYS),
    script:
        "../workflow_scripts/train_encoder.py"


rule invert:
    input:
        upstream=manifest("align"),
        segmented=manifest("seg"),  # ED/ES of unlabelled subjects
        generator=f"{DEEPRECON_MODELS}/generator.pt",
        encoder=f"{DEEPRECON_MODELS}/encoder.pt",
        seg=SEG_CHECKPOINT,
    output:
        manifest("invert"),
    log:
        f"{RESULTS}/logs/invert/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/invert/{{shard}}.tsv"
    conda:
        "../envs/gpu.yaml"
    threads: GPU_THREADS
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=shard_runtime(60),
    params:
        shard=shard_job(INVERT_SUBJECTS),
        inversion=DEEPRECON["inversion"],
        variants=DEEPRECON_VARIANTS,
    script:
        "../workflow_scripts/invert.py"


rule train_seg_latent:
    input:
        inverted=manifests("invert", SEG_TRAIN + SEG_VAL),
        generator=f"{DEEPRECON_MODELS}/generator.pt",
    output:
        model=f"{RESULTS}/models/{{method}}/seg.pt",
        history=f"{RESULTS}/models/{{method}}/history.tsv",
    log:
        f"{RESULTS}/logs/train_seg_latent/{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_seg_latent/{{method}}.tsv"
    wildcard_constraints:
        method=LATENT_PATTERN,
    conda:
        "../envs/gpu.yaml"
    threads: GPU_THREADS
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=training_runtime(240),
    params:
        train=SEG_TRAIN,
        val=SEG_VAL,
        settings=settings_for({**SEG, "epochs": DEEPRECON["seg_epochs"]}, SEG_TRAINING_KEYS),
    script:
        "../workflow_scripts/train_seg_latent.py"


rule recon_latent:
    # Every variant of a shard in one job (G loaded once): ED/ES volumes by lerp in W+, then
    # the papers' Table 1 rows (Seg(G(w*)) on the acquired slices) and PSNR/SSIM of G(w*).
    input:
        upstream=manifest("invert"),
        generator=f"{DEEPRECON_MODELS}/generator.pt",
        segs=[f"{RESULTS}/models/{m}/seg.pt" for m in LATENT_METHODS],
    output:
        recon=[manifest(f"recon-{m}") for m in LATENT_METHODS],
        slices=[manifest(f"slices-{m}") for m in LATENT_METHODS],
        heldout=[manifest(f"heldout-{m}") for m in LATENT_METHODS],
    log:
        f"{RESULTS}/logs/recon_latent/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/recon_latent/{{shard}}.tsv"
    conda:
        "../envs/gpu.yaml"
    threads: GPU_THREADS
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=shard_runtime(10 * max(1, len(LATENT_METHODS))),
    params:
        shard=shard_job(),
        slices_shard=shard_job(SEG_EVAL_SUBJECTS),
        methods=LATENT_METHODS,
        target_spacing_mm=RECON["target_spacing_mm"],
    script:
        "../workflow_scripts/recon_latent.py"


rule train_wplus_segnet:
    # The W+SegNet ablation (Table 1): labels predicted from the codes w* themselves,
    # trained on the most optimised variant's codes of the train subjects.
    input:
        inverted=manifests("invert", SEG_TRAIN + SEG_VAL),
    output:
        model=f"{RESULTS}/models/wplus_segnet/seg.pt",
        history=f"{RESULTS}/models/wplus_segnet/history.tsv",
    log:
        f"{RESULTS}/logs/train_wplus_segnet.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_wplus_segnet.tsv"
    conda:
        "../envs/gpu.yaml"
    threads: GPU_THREADS
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=training_runtime(240),
    params:
        train=SEG_TRAIN,
        val=SEG_VAL,
        variant=LATENT_METHODS[-1] if LATENT_METHODS else None,
        settings=settings_for({**SEG, "epochs": DEEPRECON["seg_epochs"]}, SEG_TRAINING_KEYS),
    script:
        "../workflow_scripts/train_wplus_segnet.py"


rule wplus_segnet_rows:
    input:
        upstream=manifest("invert"),
        model=f"{RESULTS}/models/wplus_segnet/seg.pt",
    output:
        manifest("segrows-wplus_segnet"),
    log:
        f"{RESULTS}/logs/wplus_segnet_rows/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/wplus_segnet_rows/{{shard}}.tsv"
    conda:
        "../envs/gpu.yaml"
    threads: GPU_THREADS
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=shard_runtime(2),
    params:
        shard=shard_job(SEG_EVAL_SUBJECTS),
        variant=LATENT_METHODS[-1] if LATENT_METHODS else None,
    script:
        "../workflow_scripts/wplus_segnet_rows.py"
