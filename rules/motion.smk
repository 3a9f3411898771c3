# DeepRecon motion adaptation (paper Sect. 2.3, Eq. 3; Fig. 4): a target subject's cine
# motion, taken frame to frame in W+, applied to a source subject's first frame. One GPU
# job per pair inverts every `frame_stride`-th frame of both cines with the largest
# inversion step count and segments G(w) with that variant's latent Seg.
#
# config: deeprecon.motion.{source, target, frame_stride, strength}; the default pair is
# the first two test subjects. Any other pair: ask for results/motion/{source}_to_{target}/curves.tsv.


rule motion_adaptation:
    input:
        aligned=motion_aligned,
        generator=f"{DEEPRECON_MODELS}/generator.pt",
        encoder=f"{DEEPRECON_MODELS}/encoder.pt",
        seg=SEG_CHECKPOINT,  # its features are the perceptual distance
        latent_seg=f"{RESULTS}/models/{LATENT_METHODS[-1] if LATENT_METHODS else 'NONE'}/seg.pt",
    output:
        image=f"{MOTION_DIR}/sa.nii.gz",
        labels=f"{MOTION_DIR}/seg_sa.nii.gz",
        curves=f"{MOTION_DIR}/curves.tsv",
        record=f"{MOTION_DIR}/adaptation.json",
        figure=f"{MOTION_DIR}/motion_adaptation.png",
    log:
        f"{RESULTS}/logs/motion_adaptation/{{source}}_to_{{target}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/motion_adaptation/{{source}}_to_{{target}}.tsv"
    wildcard_constraints:
        # a subject ID (SUBJECT_PATTERN) that does not contain the separator "_to_"
        source=r"(?:(?!_to_)[A-Za-z0-9_-])+",
        target=r"(?:(?!_to_)[A-Za-z0-9_-])+",
    conda:
        "../envs/gpu.yaml"
    threads: GPU_THREADS
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    params:
        labelled=lambda wc: [s for s in (wc.source, wc.target) if s in LABELLED_SET],
        inversion={**DEEPRECON["inversion"], "steps": [max(INVERSION_STEPS)]},
        frame_stride=MOTION["frame_stride"],
        strength=MOTION["strength"],
    script:
        "../workflow_scripts/motion_adaptation.py"
