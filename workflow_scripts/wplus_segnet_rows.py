from cinerecon.models.seg_files import default_device
from cinerecon.models.wplus_segnet import load_wplus_segnet
from cinerecon.stages import wplus_segnet_outputs, wplus_segnet_run
from cinerecon.workflow import shard_stage, use_threads

use_threads(snakemake.threads)

p, inp = snakemake.params, snakemake.input
device = default_device()
shard_stage(snakemake.log[0], "wplus_segnet_rows", p.shard, snakemake.output[0], inp,
            wplus_segnet_outputs, wplus_segnet_run, params=p, variant=p.variant,
            model=load_wplus_segnet(inp.model, device), device=device)
