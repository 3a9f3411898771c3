from cinerecon.evaluate import lax_rows
from cinerecon.io.files import write_parquet
from cinerecon.workflow import logged

subject, method = snakemake.wildcards.subject, snakemake.wildcards.method
with logged(snakemake.log[0], f"eval_lax[{method}]", subject):
    rows = lax_rows(subject, method, {"ED": snakemake.input.ed, "ES": snakemake.input.es},
                    snakemake.input.record, {v: snakemake.input[v] for v in snakemake.params.views})
    write_parquet(snakemake.output[0], rows)
