from cinerecon.evaluate import recon_phenotype_row
from cinerecon.io.files import write_parquet
from cinerecon.workflow import logged

subject, method = snakemake.wildcards.subject, snakemake.wildcards.method
with logged(snakemake.log[0], f"phenotypes[{method}]", subject):
    row = recon_phenotype_row(subject, method, {"ED": snakemake.input.ed, "ES": snakemake.input.es})
    write_parquet(snakemake.output[0], row)
