from cinerecon.evaluate import label_phenotype_row
from cinerecon.io.files import write_parquet
from cinerecon.workflow import logged

subject = snakemake.wildcards.subject
with logged(snakemake.log[0], "phenotypes_labels", subject):
    write_parquet(snakemake.output[0], label_phenotype_row(subject, snakemake.input.labels))
