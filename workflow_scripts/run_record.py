from cinerecon.io.files import write_tsv
from cinerecon.tables.run_record import config_rows, model_rows
from cinerecon.workflow import logged, use_threads

use_threads(snakemake.threads)

with logged(snakemake.log[0], "run_record"):
    write_tsv(snakemake.output.configuration, config_rows(snakemake.params.config))
    write_tsv(snakemake.output.models,
              model_rows(dict(zip(snakemake.params.names, snakemake.input.models))))
