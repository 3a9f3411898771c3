from cinerecon.models.seg_files import default_device
from cinerecon.models.stylegan2 import load_generator
from cinerecon.models.train_seg import load_checkpoint
from cinerecon.stages import recon_latent_outputs, recon_latent_run
from cinerecon.workflow import shard_stage

p, inp, method = snakemake.params, snakemake.input, snakemake.wildcards.method
device = default_device()
shard_stage(snakemake.log[0], f"recon_latent[{method}]", p.shard, snakemake.output[0], [inp.upstream],
            recon_latent_outputs, recon_latent_run, method=method, G=load_generator(inp.generator, device),
            seg_model=load_checkpoint(inp.seg, device), target_spacing_mm=p.target_spacing_mm, device=device)
