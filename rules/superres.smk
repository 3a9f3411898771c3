# Gemini-GAN (Savioli et al.): joint 3D super-resolution and segmentation of the aligned SAX
# stack, trained on paired 3D truth (the synthetic cohort's), with two ablations (one
# decoder each: unet_seg, unet_image); V-AMA adapts another site's stacks (the sheet's
# `domain` source) before Gemini-GAN. GPU-tagged; checkpoints are inputs.


rule train_gemini:
    input:
        aligned=manifests("align", GEMINI_TRAIN),
        synth=manifests("synth", GEMINI_TRAIN),  # the 3D truth
    output:
        model=f"{RESULTS}/models/{{method}}/{GEMINI['preset']}/model.pt",
        history=f"{RESULTS}/models/{{method}}/{GEMINI['preset']}/history.tsv",
    log:
        f"{RESULTS}/logs/train_gemini/{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_gemini/{{method}}.tsv"
    wildcard_constraints:
        method="|".join(GEMINI_METHODS) or "NONE",
    conda:
        "../envs/gpu.yaml"
    threads: GPU_THREADS
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=training_runtime(2 * 24 * 60),
    params:
        subjects=GEMINI_TRAIN,
        settings=settings_for(GEMINI, GEMINI_TRAINING_KEYS),
    script:
        "../workflow_scripts/train_gemini.py"


rule train_vama:
    # Unsupervised: the stacks and their labels (manual, else segmented: the landmarks and
    # ED/ES), never the 3D truth
    input:
        aligned=manifests("align", GEMINI_TRAIN + VAMA_SOURCE),
        seg=manifests("seg", GEMINI_TRAIN + VAMA_SOURCE),
    output:
        model=f"{RESULTS}/models/vama/{VAMA['preset']}/model.pt",
        history=f"{RESULTS}/models/vama/{VAMA['preset']}/history.tsv",
    log:
        f"{RESULTS}/logs/train_vama.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_vama.tsv"
    conda:
        "../envs/gpu.yaml"
    threads: GPU_THREADS
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=training_runtime(24 * 60),
    params:
        targets=GEMINI_TRAIN,
        sources=VAMA_SOURCE,
        labelled=[s for s in GEMINI_TRAIN + VAMA_SOURCE if s in LABELLED_SET],
        settings=VAMA,
    script:
        "../workflow_scripts/train_vama.py"


rule recon_gemini:
    # A shard's evaluated subjects reconstructed by Gemini-GAN (-> evaluate: LAX, truth,
    # phenotypes), and its target-domain test subjects scored by every network and by nn and
    # linear against their 3D truth (Table 2).
    input:
        upstream=manifest("align"),
        segmented=manifest("seg"),  # ED/ES of unlabelled subjects; the nn/linear rows
        synth=manifest("synth"),  # the 3D truth
        models=[gemini_model(m) for m in GEMINI_METHODS],
    output:
        recon=[manifest("recon-gemini_gan")] if GEMINI_RECON else [],
        scores=manifest("superres"),
    log:
        f"{RESULTS}/logs/recon_gemini/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/recon_gemini/{{shard}}.tsv"
    conda:
        "../envs/gpu.yaml"
    threads: GPU_THREADS
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=shard_runtime(10),
    params:
        shard=shard_job(EVAL_SUBJECTS),
        scored_shard=shard_job(SR_SUBJECTS),
        methods=GEMINI_METHODS,
        settings=settings_for(GEMINI, ("in_slices", "xy_factor", "slice_mm")),
    script:
        "../workflow_scripts/recon_gemini.py"


rule adapt_gemini:
    # The source domain's test subjects: Gemini-GAN on their stacks as acquired and after
    # V-AMA, against their 3D truth (Table 3)
    input:
        upstream=manifest("align"),
        synth=manifest("synth"),
        model=gemini_model("gemini_gan"),
        vama=[f"{RESULTS}/models/vama/{VAMA['preset']}/model.pt"] if VAMA_ON else [],
    output:
        manifest("superres-source"),
    log:
        f"{RESULTS}/logs/adapt_gemini/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/adapt_gemini/{{shard}}.tsv"
    conda:
        "../envs/gpu.yaml"
    threads: GPU_THREADS
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=shard_runtime(5),
    params:
        shard=shard_job(DA_SUBJECTS),
        settings=settings_for(GEMINI, ("in_slices", "xy_factor", "slice_mm")),
    script:
        "../workflow_scripts/adapt_gemini.py"


rule superres_tables:
    input:
        manifests("superres", SR_SUBJECTS) + manifests("superres-source", DA_SUBJECTS),
    output:
        **(
            {
                "domain_adaptation": f"{RESULTS}/tables/domain_adaptation.md",
                "domain_adaptation_html": in_report(
                    f"{RESULTS}/tables/domain_adaptation.html",
                    "domain_adaptation",
                    "Paper tables",
                    "Super-resolution (Gemini-GAN)",
                    table="domain_adaptation",
                ),
            }
            if DA_SUBJECTS
            else {}
        ),
        super_resolution=f"{RESULTS}/tables/super_resolution.md",
        super_resolution_html=in_report(
            f"{RESULTS}/tables/super_resolution.html",
            "super_resolution",
            "Paper tables",
            "Super-resolution (Gemini-GAN)",
            table="super_resolution",
        ),
    log:
        f"{RESULTS}/logs/superres_tables.log",
    benchmark:
        f"{RESULTS}/benchmarks/superres_tables.tsv"
    conda:
        "../envs/cpu.yaml"
    threads: TABLE_THREADS
    params:
        models={m: MODEL_FILES[m] for m in MODEL_FILES if m in GEMINI_METHODS or m == "vama"},
        subjects=SR_SUBJECTS,
        source_subjects=DA_SUBJECTS,
    script:
        "../workflow_scripts/superres_tables.py"
