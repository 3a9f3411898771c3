from cinerecon.stages import crop_outputs, crop_run
from cinerecon.workflow import shard_stage, use_threads

use_threads(snakemake.threads)

p = snakemake.params
shard_stage(snakemake.log[0], "crop", p.shard, snakemake.output[0], snakemake.input,
            crop_outputs, crop_run, params=p, sax_size=p.sax_size, lax_size=p.lax_size)
