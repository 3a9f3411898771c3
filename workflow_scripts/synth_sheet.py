from cinerecon.io.files import write_tsv
from cinerecon.workflow import logged

with logged(snakemake.log[0], "synth_sheet"):
    write_tsv(snakemake.output[0], snakemake.params.sheet[["subject", "index", "split", "has_labels", "lax_labels"]])
