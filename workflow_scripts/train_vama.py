from cinerecon.batch import ok_subjects
from cinerecon.layout import Layout
from cinerecon.models.seg_files import default_device
from cinerecon.stages import Subject
from cinerecon.superres.files import train_vama_files
from cinerecon.superres.stages import subject_files
from cinerecon.workflow import logged, training_job_for, use_threads

use_threads(snakemake.threads)

p, inp = snakemake.params, snakemake.input
with logged(snakemake.log[0], "train_vama") as log:
    layout = Layout.of_manifest(inp.aligned[0])
    done = set(ok_subjects(inp.aligned)) & set(ok_subjects(inp.seg))
    labelled = set(p.labelled)

    def files(subjects):
        return {s: subject_files(layout, Subject(s, s in labelled)) for s in subjects if s in done}

    history = train_vama_files(files(p.targets), files(p.sources), p.settings, dict(snakemake.output),
                               default_device(), job=training_job_for(snakemake, snakemake.output.model))
    log.info("last step: %s", history[-1] if history else None)
