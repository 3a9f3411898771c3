# cinerecon: UK Biobank cine MRI -> crops -> (alignment, models, reconstructions, tables).
# Conventions, layout and data flow: DESIGN.md. Run: snakemake --cores 2

from pathlib import Path

from snakemake.utils import min_version, validate

from cinerecon.config_presets import config_sources, resolve_workflow_config, write_effective_config
from cinerecon.workflow import put_checkout_on_pythonpath

min_version("9.0")

# Jobs (local, SLURM, or in envs/*.yaml with --software-deployment-method conda, which hold
# the dependencies only) import cinerecon from this checkout.
put_checkout_on_pythonpath(workflow.basedir)


# The configuration: config/presets/{preset}.yaml (preset: demo unless the user says paper)
# with the user's --configfile/--config deep-merged over it; no `configfile:` directive, so
# no other file's values reach a run (cinerecon/config_presets.py).
PRESETS = Path(workflow.current_basedir.get_path_or_uri(secret_free=False)) / "config" / "presets"
resolve_workflow_config(config, workflow, PRESETS)


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
include: "rules/superres.smk"
include: "rules/mae.smk"
include: "rules/evaluate.smk"
include: "rules/tables.smk"
include: "rules/cohort.smk"
include: "rules/report.smk"


# The effective configuration of every run that executes jobs, under {results}/config/
# (never while the DAG is built: cluster jobs parse this file again; never in a dry run).
onstart:
    write_effective_config(config, RESULTS, config_sources(workflow))


# snakemake --report report.html (or .zip): this page, then the outputs flagged in rules/
report: "report/workflow.rst"


rule all:
    default_target: True
    input:
        final_outputs(),
