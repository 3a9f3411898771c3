from cinerecon.models.seg_files import default_device
from cinerecon.models.train_seg import load_checkpoint
from cinerecon.stages import seg_outputs, seg_run
from cinerecon.workflow import shard_stage, use_threads

use_threads(snakemake.threads)

p, checkpoint = snakemake.params, snakemake.input.model
device = default_device()
model = load_checkpoint(checkpoint, device)  # once for the whole shard
shard_stage(snakemake.log[0], "seg", p.shard, snakemake.output[0], snakemake.input,
            seg_outputs, seg_run, params=p, model=model, checkpoint=checkpoint, frames=p.frames,
            batch_size=p.batch_size, device=device)
