from cinerecon.batch import ok_subjects
from cinerecon.latent.deeprecon_files import train_encoder_files
from cinerecon.layout import Layout
from cinerecon.models.seg_files import default_device
from cinerecon.workflow import logged, training_job_for, use_threads

use_threads(snakemake.threads)

inp = snakemake.input
with logged(snakemake.log[0], "train_encoder") as log:
    layout = Layout.of_manifest(inp.aligned[0])
    done = set(ok_subjects(inp.aligned))
    paths = {s: layout.aligned(s)["sa"] for s in snakemake.params.subjects if s in done}
    history = train_encoder_files(inp.generator, paths, inp.seg, snakemake.params.settings,
                                  dict(snakemake.output), default_device(),
                                  training_job_for(snakemake, snakemake.output.encoder))
    log.info("last step: %s", history[-1] if history else None)
