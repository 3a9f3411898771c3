from cinerecon.io.subject import VIEWS
from cinerecon.preprocess.ingest import ingest_images
from cinerecon.workflow import logged

subject = snakemake.wildcards.subject
with logged(snakemake.log[0], "ingest", subject) as log:
    report = ingest_images(snakemake.params.folder, subject,
                           {v: snakemake.output[v] for v in VIEWS}, snakemake.output.report)
    log.info("views: %s", report["views"])
