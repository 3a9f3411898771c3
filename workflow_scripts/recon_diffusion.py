from cinerecon.layout import Layout
from cinerecon.models.diffusion import load_diffae
from cinerecon.models.seg_files import default_device
from cinerecon.models.train_seg import load_checkpoint
from cinerecon.stages import BatchedDiffusion, Subject, acquired_rows_outputs, acquired_rows_run
from cinerecon.workflow import logged, shard_stage, use_threads

use_threads(snakemake.threads)

p, inp, out, method = snakemake.params, snakemake.input, snakemake.output, snakemake.wildcards.method
device = default_device()
seg = load_checkpoint(inp.seg, device)
model = load_diffae(inp.model, device, seg_model=seg if method == "dmcvr" else None)
labelled = set(p.shard["labelled"])
with logged(snakemake.log[0], f"load_slices[{method}]"):  # encoding and decoding run in passes, below
    batch = BatchedDiffusion(Layout.of_manifest(out.recon), [Subject(s, s in labelled) for s in p.shard["subjects"]],
                             model, seg, p.settings, p.target_spacing_mm, device, method,
                             heldout_subjects=p.slices_shard["subjects"])
shard_stage(snakemake.log[0], f"recon_diffusion[{method}]", p.shard, out.recon, inp, batch.outputs, batch.run,
            params=p)
shard_stage(snakemake.log[0], f"eval_slices[{method}]", p.slices_shard, out.slices, [out.recon],
            acquired_rows_outputs, acquired_rows_run, params=p, method=method)
shard_stage(snakemake.log[0], f"heldout[{method}]", p.slices_shard, out.heldout, [out.recon],
            batch.heldout_outputs, batch.heldout_run, params=p)
