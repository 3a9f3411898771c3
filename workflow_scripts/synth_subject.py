from pathlib import Path

from cinerecon.synth.cohort import generate_subject
from cinerecon.synth.scanner import AcquisitionConfig
from cinerecon.workflow import logged

subject = snakemake.wildcards.subject
with logged(snakemake.log[0], "synth_subject", subject) as log:
    acq = AcquisitionConfig.from_dict(snakemake.params.acquisition)
    written = generate_subject(subject, snakemake.params.seed, snakemake.params.index,
                               Path(snakemake.output.sa).parent, acq)
    log.info("wrote %d files", len(written))
