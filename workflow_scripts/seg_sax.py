from cinerecon.models.seg_files import segment_subject
from cinerecon.workflow import logged

subject = snakemake.wildcards.subject
with logged(snakemake.log[0], "seg_sax", subject) as log:
    stats = segment_subject(subject, snakemake.input.image, snakemake.input.model, snakemake.output[0],
                            snakemake.params.frames, snakemake.input.get("labels"),
                            snakemake.params.batch_size)
    log.info("frames %s, %.1f slices/s", stats["frames"], stats["slices_per_second"])
