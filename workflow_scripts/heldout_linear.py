from cinerecon.stages import heldout_linear_run, heldout_outputs
from cinerecon.workflow import shard_stage, use_threads

use_threads(snakemake.threads)

shard_stage(snakemake.log[0], "heldout[linear]", snakemake.params.shard, snakemake.output[0], snakemake.input,
            heldout_outputs, heldout_linear_run, params=snakemake.params, method="linear")
