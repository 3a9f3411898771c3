from cinerecon.stages import directseg_outputs, directseg_run
from cinerecon.workflow import shard_stage, use_threads

use_threads(snakemake.threads)

shard_stage(snakemake.log[0], "eval_directseg", snakemake.params.shard, snakemake.output[0],
            snakemake.input, directseg_outputs, directseg_run, params=snakemake.params)
