from cinerecon.batch import ok_subjects
from cinerecon.latent.deeprecon_files import train_latent_seg_files
from cinerecon.layout import Layout
from cinerecon.models.seg_files import default_device
from cinerecon.workflow import logged, training_job_for, use_threads

use_threads(snakemake.threads)

p, inp, method = snakemake.params, snakemake.input, snakemake.wildcards.method
with logged(snakemake.log[0], f"train_seg_latent[{method}]") as log:
    layout = Layout.of_manifest(inp.inverted[0])
    done = set(ok_subjects(inp.inverted))

    def pairs(subjects):
        kept = [s for s in subjects if s in done]
        return ({s: layout.latent(method, s) for s in kept}, {s: layout.aligned(s)["label_sa"] for s in kept})

    history = train_latent_seg_files(inp.generator, pairs(p.train), pairs(p.val), p.settings,
                                     dict(snakemake.output), default_device(),
                                     training_job_for(snakemake, snakemake.output.model))
    log.info("best validation Dice: %s", max(h["val_dice_mean"] for h in history))
