from cinerecon.stages import synth_outputs, synth_run
from cinerecon.workflow import shard_stage, use_threads

use_threads(snakemake.threads)

p = snakemake.params
shard_stage(snakemake.log[0], "synth", p.shard, snakemake.output[0], [], synth_outputs, synth_run, params=p,
            seed=p.seed, index=p.index, acquisition=p.acquisition, dicom=p.dicom,
            label_frames=p.label_frames)
