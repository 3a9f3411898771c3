from cinerecon.batch import ok_subjects
from cinerecon.latent.wplus_segnet_files import train_wplus_segnet_files
from cinerecon.layout import Layout
from cinerecon.models.seg_files import default_device
from cinerecon.workflow import logged, training_job_for, use_threads

use_threads(snakemake.threads)

p, inp = snakemake.params, snakemake.input
with logged(snakemake.log[0], "train_wplus_segnet") as log:
    layout = Layout.of_manifest(inp.inverted[0])
    done = set(ok_subjects(inp.inverted))

    def pairs(subjects):
        kept = [s for s in subjects if s in done]
        return {s: layout.latent(p.variant, s) for s in kept}, {s: layout.aligned(s)["label_sa"] for s in kept}

    history = train_wplus_segnet_files(*pairs(p.train), *pairs(p.val), p.settings, dict(snakemake.output),
                                       default_device(), training_job_for(snakemake, snakemake.output.model))
    log.info("best validation Dice: %s", max(h["val_dice_mean"] for h in history))
