# cinerecon: UK Biobank cine MRI -> crops -> (alignment, models, reconstructions, tables).
# Conventions, layout and data flow: DESIGN.md. Run: snakemake --cores 2

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "config/schema.yaml")


include: "rules/common.smk"
include: "rules/synth.smk"
include: "rules/ingest.smk"
include: "rules/crop.smk"
include: "rules/align.smk"
include: "rules/segmentation.smk"
include: "rules/recon.smk"
include: "rules/deeprecon.smk"
include: "rules/motion.smk"
include: "rules/dmcvr.smk"
include: "rules/evaluate.smk"
include: "rules/tables.smk"
include: "rules/cohort.smk"


rule all:
    input:
        final_outputs(),
    default_target: True
