from cinerecon.models.seg_files import default_device
from cinerecon.superres import stages
from cinerecon.superres.files import load_gemini, load_vama
from cinerecon.workflow import shard_stage, use_threads

use_threads(snakemake.threads)

p, inp = snakemake.params, snakemake.input
device = default_device()
vama = load_vama(inp.vama[0], device) if inp.vama else None
shard_stage(snakemake.log[0], "adapted_scores", p.shard, snakemake.output[0], inp, stages.score_outputs,
            stages.adapted_score_run, params=p, model=load_gemini(inp.model, device), vama=vama,
            settings=p.settings)
