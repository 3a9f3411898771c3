from cinerecon.baselines.files import reconstruct_subject
from cinerecon.workflow import logged

subject, method = snakemake.wildcards.subject, snakemake.wildcards.method
with logged(snakemake.log[0], f"recon_baseline[{method}]", subject) as log:
    record = reconstruct_subject(subject, snakemake.input.labels, method,
                                 snakemake.params.target_spacing_mm,
                                 {"ED": snakemake.output.ed, "ES": snakemake.output.es},
                                 snakemake.output.record)
    log.info("k=%d, ES frame %d, seconds %s", record["k"], record["frames"]["ES"], record["seconds"])
