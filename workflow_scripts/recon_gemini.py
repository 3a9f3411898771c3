from cinerecon.models.seg_files import default_device
from cinerecon.superres import stages
from cinerecon.superres.files import load_gemini
from cinerecon.workflow import shard_stage, use_threads

use_threads(snakemake.threads)

p, inp, out = snakemake.params, snakemake.input, snakemake.output
device = default_device()
paths = dict(zip(p.methods, inp.models))
models = {"gemini_gan": load_gemini(paths["gemini_gan"], device)} if "gemini_gan" in paths else {}
if out.recon:  # the evaluated subjects' volumes depend on Gemini-GAN's model alone
    shard_stage(snakemake.log[0], "recon_gemini", p.shard, out.recon[0],
                [inp.upstream, inp.segmented, paths["gemini_gan"]], stages.recon_outputs, stages.recon_run,
                params=p, model=models["gemini_gan"], settings=p.settings)
models = {m: models.get(m) or load_gemini(path, device) for m, path in paths.items()}  # in p.methods' order
shard_stage(snakemake.log[0], "superres_scores", p.scored_shard, out.scores, inp, stages.score_outputs,
            stages.score_run, params=p, models=models, settings=p.settings)
