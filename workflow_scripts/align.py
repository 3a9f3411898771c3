from cinerecon.stages import align_outputs, align_run
from cinerecon.workflow import shard_stage, use_threads

use_threads(snakemake.threads)

p = snakemake.params
shard_stage(snakemake.log[0], f"align[{p.method}]", p.shard, snakemake.output[0], snakemake.input,
            align_outputs, align_run, params=p, method=p.method,
            sax_thickness_mm=p.sax_thickness_mm)
