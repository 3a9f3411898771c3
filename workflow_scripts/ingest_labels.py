from cinerecon.io.subject import VIEWS
from cinerecon.preprocess.ingest import ingest_labels
from cinerecon.workflow import logged

subject = snakemake.wildcards.subject
with logged(snakemake.log[0], "ingest_labels", subject):
    ingest_labels(snakemake.params.folder, subject, {v: snakemake.output[v] for v in VIEWS})
