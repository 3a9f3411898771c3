from cinerecon.batch import ok_subjects
from cinerecon.latent.dmcvr import train_diffusion_files
from cinerecon.layout import Layout
from cinerecon.models.seg_files import default_device
from cinerecon.models.train_seg import load_checkpoint
from cinerecon.workflow import logged, training_job_for, use_threads

use_threads(snakemake.threads)

p, inp = snakemake.params, snakemake.input
with logged(snakemake.log[0], f"train_diffusion[{snakemake.wildcards.method}]") as log:
    layout = Layout.of_manifest(inp.aligned[0])
    done = set(ok_subjects(inp.aligned))
    paths = {s: layout.aligned(s)["sa"] for s in p.subjects if s in done}
    device = default_device()
    seg = load_checkpoint(inp.seg[0], device) if inp.seg else None  # DMCVR only: z_mor
    history = train_diffusion_files(paths, p.settings, dict(snakemake.output), device, seg_model=seg,
                                    job=training_job_for(snakemake, snakemake.output.model))
    log.info("last step: %s", history[-1] if history else None)
