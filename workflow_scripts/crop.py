from cinerecon.io.subject import VIEWS
from cinerecon.preprocess.crop import crop_subject_files
from cinerecon.workflow import logged

subject = snakemake.wildcards.subject
with logged(snakemake.log[0], "crop", subject) as log:
    record = crop_subject_files(
        subject,
        {v: snakemake.input[v] for v in VIEWS},
        {v: snakemake.output[v] for v in VIEWS},
        snakemake.output.record,
        snakemake.params.sax_size,
        snakemake.params.lax_size,
    )
    log.info("heart centre %s mm", record["centre_mm"])
