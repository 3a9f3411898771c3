from cinerecon.io.files import write_parquet
from cinerecon.models.seg_files import directseg_rows
from cinerecon.workflow import logged

subject = snakemake.wildcards.subject
with logged(snakemake.log[0], "eval_directseg", subject):
    metrics, phen = directseg_rows(subject, snakemake.input.seg, snakemake.input.labels)
    write_parquet(snakemake.output.metrics, metrics)
    write_parquet(snakemake.output.phenotypes, phen)
