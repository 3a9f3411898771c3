from cinerecon.align.files import align_labels
from cinerecon.workflow import logged

subject = snakemake.wildcards.subject
with logged(snakemake.log[0], "align_labels", subject):
    align_labels(subject, snakemake.input.labels, snakemake.input.shifts, snakemake.output[0])
