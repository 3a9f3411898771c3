from cinerecon.stages import evaluate_outputs, evaluate_run
from cinerecon.workflow import shard_stage, use_threads

use_threads(snakemake.threads)

method = snakemake.wildcards.method
shard_stage(snakemake.log[0], f"evaluate[{method}]", snakemake.params.shard, snakemake.output[0],
            snakemake.input, evaluate_outputs, evaluate_run, params=snakemake.params, method=method,
            truth=snakemake.params.truth)
