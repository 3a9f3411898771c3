from cinerecon.io.subject import VIEWS
from cinerecon.preprocess.crop import crop_label_files
from cinerecon.workflow import logged

subject = snakemake.wildcards.subject
with logged(snakemake.log[0], "crop_labels", subject) as log:
    report = crop_label_files(
        subject,
        {v: snakemake.input[v] for v in VIEWS},
        snakemake.input.record,
        {v: snakemake.output[v] for v in VIEWS},
        snakemake.output.centring,
    )
    log.info("centring error %s mm", report["centring_error_mm"])
