from pathlib import Path

from cinerecon.tables.report import write_report
from cinerecon.workflow import logged

with logged(snakemake.log[0], "report"):
    write_report(snakemake.input.lax, snakemake.input.truth, snakemake.input.phenotypes,
                 Path(snakemake.output.tables[0]).parent, Path(snakemake.output.figures[0]).parent,
                 snakemake.params.method_order, snakemake.input.sax)
