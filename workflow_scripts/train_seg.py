from cinerecon.batch import ok_subjects
from cinerecon.layout import Layout
from cinerecon.models.seg_files import train_from_files
from cinerecon.workflow import logged, training_job_for, use_threads

use_threads(snakemake.threads)

p = snakemake.params
with logged(snakemake.log[0], f"train_seg[{snakemake.wildcards.seg_model}]") as log:
    layout, aligned = Layout.of_manifest(snakemake.input[0]), set(ok_subjects(snakemake.input))
    for s in sorted(set(p.train + p.val) - aligned):
        log.warning("subject %s left out of training: it failed an earlier stage", s)

    def pairs(subjects):
        return [(s, layout.aligned(s)["sa"], layout.aligned(s)["label_sa"]) for s in subjects if s in aligned]

    history = train_from_files(pairs(p.train), pairs(p.val), p.settings,
                               snakemake.output.model, snakemake.output.history, snakemake.output.curve,
                               training_job_for(snakemake, snakemake.output.model))
    log.info("best validation Dice: %s", max(h["val_dice_mean"] for h in history))
