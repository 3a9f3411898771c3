from cinerecon.stages import ingest_outputs, ingest_run
from cinerecon.workflow import shard_stage

p = snakemake.params
shard_stage(snakemake.log[0], "ingest", p.shard, snakemake.output[0], snakemake.input,
            ingest_outputs, ingest_run, sources=p.sources)
