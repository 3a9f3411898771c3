from pathlib import Path

from cinerecon.layout import Layout
from cinerecon.tables.report import report_inputs, write_report
from cinerecon.workflow import logged, use_threads

use_threads(snakemake.threads)

p, inp = snakemake.params, snakemake.input
with logged(snakemake.log[0], "report"):
    files = report_inputs(Layout.of_manifest(inp.reference[0]), {m: inp[f"eval_{m}"] for m in p.methods},
                          inp.reference, inp.directseg, p.truth, inp.latent_rows, inp.heldout,
                          inp.wplus_segnet)
    write_report(files["lax"], files["truth"], files["phenotypes"],
                 Path(snakemake.output.tables[0]).parent, Path(snakemake.output.figures[0]).parent,
                 p.method_order, files["sax"], files["image"], files["heldout"], splits=p.splits)
