from cinerecon.tables.report import write_report
from cinerecon.workflow import logged

with logged(snakemake.log[0], "report"):
    write_report(snakemake.input.lax, snakemake.input.truth, snakemake.input.phenotypes,
                 snakemake.params.tables_dir, snakemake.params.figures_dir,
                 snakemake.params.method_order)
