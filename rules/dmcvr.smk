# DMCVR (He et al., MICCAI 2023) and its DiffAE ablation: a diffusion autoencoder trained on
# the pre-training subjects' cine slices (dmcvr.pretrain_splits, labelled or not; DMCVR also
# conditioned on the frozen SAX U-Net's bottleneck, z_mor); every ED/ES slice of a shard
# encoded by DDIM inversion, the codes interpolated between adjacent slices (lerp z_sem,
# z_mor; slerp x_T), decoded and
# segmented with the U-Net trained on real images. GPU-tagged; checkpoints are inputs.


rule train_diffusion:
    input:
        aligned=manifests("align", DMCVR_PRETRAIN),
        seg=lambda wc: [SEG_CHECKPOINT] if wc.method == "dmcvr" else [],  # z_mor; DiffAE has none
    output:
        model=f"{RESULTS}/models/{{method}}/{DMCVR['preset']}/model.pt",
        history=f"{RESULTS}/models/{{method}}/{DMCVR['preset']}/history.tsv",
        samples=f"{RESULTS}/models/{{method}}/{DMCVR['preset']}/round_trip.png",
    log:
        f"{RESULTS}/logs/train_diffusion/{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_diffusion/{{method}}.tsv"
    wildcard_constraints:
        method=DIFFUSION_PATTERN,
    conda:
        "../envs/gpu.yaml"
    threads: GPU_THREADS
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=training_runtime(5 * 24 * 60),
    params:
        subjects=DMCVR_PRETRAIN,
        settings=settings_for(DMCVR, DIFFUSION_TRAINING_KEYS),
    script:
        "../workflow_scripts/train_diffusion.py"


rule recon_diffusion:
    # A shard's ED/ES slices encoded, and every fine-grid and held-out slice decoded, in
    # shared batches; then the Table 1 rows (the real-image U-Net on the rebuilt acquired
    # slices) and PSNR/SSIM.
    input:
        upstream=manifest("align"),
        segmented=manifest("seg"),  # ED/ES of unlabelled subjects
        model=lambda wc: diffusion_model(wc.method),
        seg=SEG_CHECKPOINT,
    output:
        recon=manifest("recon-{method}"),
        slices=manifest("slices-{method}"),
        heldout=manifest("heldout-{method}"),
    log:
        f"{RESULTS}/logs/recon_diffusion/{{method}}/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/recon_diffusion/{{method}}/{{shard}}.tsv"
    wildcard_constraints:
        method=DIFFUSION_PATTERN,
    conda:
        "../envs/gpu.yaml"
    threads: GPU_THREADS
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=shard_runtime(60),
    params:
        shard=shard_job(),
        slices_shard=shard_job(SEG_EVAL_SUBJECTS),
        settings=DMCVR,
        target_spacing_mm=RECON["target_spacing_mm"],
    script:
        "../workflow_scripts/recon_diffusion.py"


rule heldout_linear:
    # The reference for the held-out-slice evaluation of the generative methods.
    input:
        manifest("align"),
    output:
        manifest("heldout-linear"),
    log:
        f"{RESULTS}/logs/heldout_linear/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/heldout_linear/{{shard}}.tsv"
    conda:
        "../envs/cpu.yaml"
    threads: CPU_STAGE_THREADS
    resources:
        mem_mb=2000,
        runtime=shard_runtime(2),
    params:
        shard=shard_job(SEG_EVAL_SUBJECTS),
    script:
        "../workflow_scripts/heldout_linear.py"
