from cinerecon.io.files import raw_nifti_files
from cinerecon.stages import ingest_outputs, ingest_run
from cinerecon.workflow import shard_stage, use_threads

use_threads(snakemake.threads)

p = snakemake.params
shard_stage(snakemake.log[0], "ingest", p.shard, snakemake.output[0], snakemake.input,
            ingest_outputs, ingest_run, params=p, raw_files=lambda s: raw_nifti_files(p.sources[s.id]),
            sources=p.sources)
