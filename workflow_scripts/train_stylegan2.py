from cinerecon.batch import ok_subjects
from cinerecon.latent.deeprecon_files import train_generator_files
from cinerecon.layout import Layout
from cinerecon.models.seg_files import default_device
from cinerecon.workflow import logged, training_job_for, use_threads

use_threads(snakemake.threads)

with logged(snakemake.log[0], "train_stylegan2") as log:
    layout = Layout.of_manifest(snakemake.input[0])
    done = set(ok_subjects(snakemake.input))
    paths = {s: layout.aligned(s)["sa"] for s in snakemake.params.subjects if s in done}
    history = train_generator_files(paths, snakemake.params.settings, dict(snakemake.output), default_device(),
                                    training_job_for(snakemake, snakemake.output.generator))
    log.info("last step: %s", history[-1] if history else None)
