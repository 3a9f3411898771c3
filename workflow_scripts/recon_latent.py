from cinerecon.models.seg_files import default_device
from cinerecon.models.stylegan2 import load_generator
from cinerecon.models.train_seg import load_checkpoint
from cinerecon.stages import (
    acquired_rows_outputs,
    acquired_rows_run,
    heldout_latent_run,
    heldout_outputs,
    recon_latent_outputs,
    recon_latent_run,
)
from cinerecon.workflow import shard_stage, use_threads

use_threads(snakemake.threads)

p, inp, out = snakemake.params, snakemake.input, snakemake.output
device = default_device()
G = load_generator(inp.generator, device)
for i, method in enumerate(p.methods):
    seg = load_checkpoint(inp.segs[i], device)
    shard_stage(snakemake.log[0], f"recon_latent[{method}]", p.shard, out.recon[i],
                [inp.upstream, inp.generator, inp.segs[i]], recon_latent_outputs, recon_latent_run, params=p,
                method=method, G=G,
                seg_model=seg, target_spacing_mm=p.target_spacing_mm,
                device=device)
    shard_stage(snakemake.log[0], f"eval_slices[{method}]", p.slices_shard, out.slices[i], [out.recon[i]],
                acquired_rows_outputs, acquired_rows_run, params=p, method=method)
    shard_stage(snakemake.log[0], f"heldout[{method}]", p.slices_shard, out.heldout[i], [out.recon[i]],
                heldout_outputs, heldout_latent_run, params=p, method=method, G=G, seg_model=seg, device=device)
