from cinerecon.cohort.stages import seg_record_outputs, seg_record_run
from cinerecon.workflow import shard_stage, use_threads

use_threads(snakemake.threads)

shard_stage(snakemake.log[0], "seg_record", snakemake.params.shard, snakemake.output[0], snakemake.input,
            seg_record_outputs, seg_record_run, params=snakemake.params, qc=snakemake.params.qc)
