from cinerecon.evaluate import truth_metric_rows
from cinerecon.io.files import write_parquet
from cinerecon.workflow import logged

subject, method = snakemake.wildcards.subject, snakemake.wildcards.method
with logged(snakemake.log[0], f"eval_truth[{method}]", subject):
    rows = truth_metric_rows(subject, method, {"ED": snakemake.input.ed, "ES": snakemake.input.es},
                             {"ED": snakemake.input.truth_ed, "ES": snakemake.input.truth_es})
    write_parquet(snakemake.output[0], rows)
