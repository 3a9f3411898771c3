from cinerecon.latent.deeprecon import InversionSettings
from cinerecon.latent.deeprecon_files import perceptual_from_seg
from cinerecon.layout import Layout
from cinerecon.models.encoder import load_encoder
from cinerecon.models.seg_files import default_device
from cinerecon.models.stylegan2 import load_generator
from cinerecon.stages import BatchedInversion, Subject
from cinerecon.workflow import shard_stage, use_threads

use_threads(snakemake.threads)

p, inp = snakemake.params, snakemake.input
device = default_device()
layout = Layout.of_manifest(snakemake.output[0])
labelled = set(p.shard["labelled"])
batch = BatchedInversion(layout, [Subject(s, s in labelled) for s in p.shard["subjects"]],
                         load_generator(inp.generator, device), load_encoder(inp.encoder, device),
                         perceptual_from_seg(inp.seg, device), InversionSettings.from_dict(p.inversion),
                         device, {int(k): v for k, v in p.variants.items()})
# The batched inversion runs when the first subject that needs it is reached (a resumed job
# whose subjects all finished skips it), inside the stage's log.
shard_stage(snakemake.log[0], "invert", p.shard, snakemake.output[0], inp, batch.outputs, batch.run, params=p)
