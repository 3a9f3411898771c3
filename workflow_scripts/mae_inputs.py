from cinerecon.mae import stages
from cinerecon.workflow import shard_stage, use_threads

use_threads(snakemake.threads)

p = snakemake.params
shard_stage(snakemake.log[0], "mae_inputs", p.shard, snakemake.output[0], snakemake.input, stages.inputs_outputs,
            stages.inputs_run, params=p, settings=p.settings, truth=p.truth, directseg=True)
