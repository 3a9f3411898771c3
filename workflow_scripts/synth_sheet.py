from cinerecon.io.files import write_tsv
from cinerecon.workflow import logged, use_threads

use_threads(snakemake.threads)

with logged(snakemake.log[0], "synth_sheet"):
    write_tsv(snakemake.output[0], snakemake.params.sheet[["subject", "index", "split", "has_labels", "lax_labels", "domain"]])
