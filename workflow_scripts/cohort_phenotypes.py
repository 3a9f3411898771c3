from pathlib import Path

from cinerecon.cohort.stages import write_cohort_tables
from cinerecon.workflow import logged, use_threads

use_threads(snakemake.threads)

p, inp = snakemake.params, snakemake.input
with logged(snakemake.log[0], "cohort_phenotypes"):
    write_cohort_tables(p.sheet, inp.seg, inp.recon, inp.upstream, p.methods, p.truth,
                        Path(snakemake.output[0]).parent)
