from cinerecon.align.files import align_subject
from cinerecon.workflow import logged

subject, views = snakemake.wildcards.subject, snakemake.params.views
with logged(snakemake.log[0], f"align[{snakemake.params.method}]", subject) as log:
    labels = snakemake.params.method == "labels"
    table = align_subject(
        subject, snakemake.params.method, snakemake.input.sa,
        {v: snakemake.input[v] for v in views},
        {"sa": snakemake.output.sa, "shifts": snakemake.output.shifts, "report": snakemake.output.report},
        sax_label_path=snakemake.input.label_sa if labels else None,
        lax_label_paths={v: snakemake.input[f"label_{v}"] for v in views} if labels else None,
    )
    log.info("shifts (mm):\n%s", table.to_string(index=False))
