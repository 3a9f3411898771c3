from cinerecon.stages import recon_outputs, recon_run
from cinerecon.workflow import shard_stage, use_threads

use_threads(snakemake.threads)

p, method = snakemake.params, snakemake.wildcards.method
shard_stage(snakemake.log[0], f"recon[{method}]", p.shard, snakemake.output[0], snakemake.input,
            recon_outputs, recon_run, params=p, method=method, target_spacing_mm=p.target_spacing_mm)
