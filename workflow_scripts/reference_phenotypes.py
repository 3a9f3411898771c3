from cinerecon.stages import reference_outputs, reference_run
from cinerecon.workflow import shard_stage, use_threads

use_threads(snakemake.threads)

shard_stage(snakemake.log[0], "reference_phenotypes", snakemake.params.shard, snakemake.output[0],
            snakemake.input, reference_outputs, reference_run, params=snakemake.params, truth=snakemake.params.truth)
