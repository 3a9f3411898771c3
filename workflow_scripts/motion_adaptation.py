from cinerecon.batch import ok_subjects
from cinerecon.io.nifti import InputError
from cinerecon.latent.deeprecon import InversionSettings
from cinerecon.latent.deeprecon_files import perceptual_from_seg
from cinerecon.latent.motion_files import adapt_subject_motion
from cinerecon.layout import Layout
from cinerecon.models.encoder import load_encoder
from cinerecon.models.seg_files import default_device
from cinerecon.models.stylegan2 import load_generator
from cinerecon.models.train_seg import load_checkpoint
from cinerecon.workflow import logged, use_threads

use_threads(snakemake.threads)

p, inp, wc = snakemake.params, snakemake.input, snakemake.wildcards
pair = f"{wc.source}_to_{wc.target}"
with logged(snakemake.log[0], f"motion_adaptation[{pair}]") as log:
    device = default_device()
    layout = Layout.of_manifest(inp.aligned[0])
    done = set(ok_subjects(inp.aligned))
    for s in (wc.source, wc.target):
        if s not in done:
            raise InputError(s, layout.aligned(s)["sa"], "did not pass the align stage (see its shard manifest)")
    images = {s: layout.aligned(s)["sa"] for s in (wc.source, wc.target)}
    labels = {s: layout.aligned(s)["label_sa"] for s in p.labelled}
    record = adapt_subject_motion(
        wc.source, wc.target, images, load_generator(inp.generator, device), load_encoder(inp.encoder, device),
        perceptual_from_seg(inp.seg, device), load_checkpoint(inp.latent_seg, device),
        InversionSettings.from_dict(p.inversion), dict(snakemake.output), label_paths=labels,
        frame_stride=p.frame_stride, strength=p.strength, device=device)
    log.info("EF (%%): %s", {k: v["ef_percent"] for k, v in record["ef"].items()})
