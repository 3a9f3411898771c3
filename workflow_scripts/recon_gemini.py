from cinerecon.models.seg_files import default_device
from cinerecon.superres import stages
from cinerecon.superres.files import load_gemini, load_vama
from cinerecon.workflow import shard_stage, use_threads

use_threads(snakemake.threads)

p, inp, out = snakemake.params, snakemake.input, snakemake.output
device = default_device()
models = {m: load_gemini(path, device) for m, path in zip(p.methods, inp.models)}
if out.recon:  # (an empty shard writes an empty manifest)
    shard_stage(snakemake.log[0], "recon_gemini", p.shard, out.recon[0], inp, stages.recon_outputs,
                stages.recon_run, params=p, model=models["gemini_gan"], settings=p.settings)
vama = load_vama(inp.vama[0], device) if inp.vama else None
shard_stage(snakemake.log[0], "superres_scores", p.scored_shard, out.scores, inp, stages.score_outputs,
            stages.score_run, params=p, models=models, vama=vama, settings=p.settings, domain=p.domain)
