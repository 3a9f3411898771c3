from cinerecon.cohort.stages import generative_outputs, generative_run
from cinerecon.workflow import shard_stage, use_threads

use_threads(snakemake.threads)

method = snakemake.wildcards.method
shard_stage(snakemake.log[0], f"cohort_generative[{method}]", snakemake.params.shard, snakemake.output[0],
            snakemake.input, generative_outputs, generative_run, params=snakemake.params, method=method)
