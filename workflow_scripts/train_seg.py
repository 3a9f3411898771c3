from cinerecon.models.seg_files import train_from_files
from cinerecon.workflow import logged


def pairs(subjects, images, labels):
    return list(zip(subjects, images, labels))


subjects = snakemake.params.train + snakemake.params.val
n_train = len(snakemake.params.train)
with logged(snakemake.log[0], f"train_seg[{snakemake.wildcards.seg_model}]") as log:
    everything = pairs(subjects, snakemake.input.images, snakemake.input.labels)
    history = train_from_files(everything[:n_train], everything[n_train:], snakemake.params.settings,
                               snakemake.output.model, snakemake.output.history, snakemake.output.curve)
    log.info("best validation Dice: %s", max(h["val_dice_mean"] for h in history))
