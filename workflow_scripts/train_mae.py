from cinerecon.batch import ok_subjects
from cinerecon.layout import Layout
from cinerecon.mae.files import pretrain_files
from cinerecon.models.seg_files import default_device
from cinerecon.workflow import logged, training_job_for, use_threads

use_threads(snakemake.threads)

p = snakemake.params
with logged(snakemake.log[0], "train_mae[pretrained]") as log:
    layout = Layout.of_manifest(snakemake.input[0])
    done = set(ok_subjects(snakemake.input))  # a failed subject is in subject_status, not here
    subjects = {s: layout.mae_inputs(s) for s in p.subjects if s in done}
    history = pretrain_files(subjects, p.settings, dict(snakemake.output), default_device(),
                             job=training_job_for(snakemake, snakemake.output.model))
    log.info("last step: %s", history[-1] if history else None)
