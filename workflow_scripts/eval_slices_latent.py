from cinerecon.stages import acquired_rows_outputs, acquired_rows_run
from cinerecon.workflow import shard_stage

method = snakemake.wildcards.method
shard_stage(snakemake.log[0], f"eval_slices[{method}]", snakemake.params.shard, snakemake.output[0],
            snakemake.input, acquired_rows_outputs, acquired_rows_run, method=method)
