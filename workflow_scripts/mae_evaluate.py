from cinerecon.mae import files as F
from cinerecon.mae import stages
from cinerecon.models.seg_files import default_device
from cinerecon.workflow import shard_stage, use_threads

use_threads(snakemake.threads)

p, inp = snakemake.params, snakemake.input
device = default_device()
pretrained, phenotypes, segmentation, resnet = inp.models
models = {"pretrained": F.load_pretrained(pretrained, device), "phenotypes": F.load_regressor(phenotypes, "phenotypes", device),
          "resnet": F.load_regressor(resnet, "resnet", device), "segmentation": F.load_segmenter(segmentation, device)}
shard_stage(snakemake.log[0], "mae_evaluate", p.shard, snakemake.output[0], inp, stages.eval_outputs, stages.eval_run,
            params=p, models=models, settings=p.settings, device=device)
