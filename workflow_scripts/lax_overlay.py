from cinerecon.batch import ok_subjects
from cinerecon.evaluate import lax_overlay_panels
from cinerecon.layout import Layout
from cinerecon.plots import lax_overlay_grid
from cinerecon.workflow import logged, use_threads

use_threads(snakemake.threads)

p, method = snakemake.params, snakemake.wildcards.method
with logged(snakemake.log[0], f"lax_overlay[{method}]"):
    layout, done = Layout.of_manifest(snakemake.input.recon[0]), set(ok_subjects(snakemake.input.recon))
    panels = []
    for subject in (s for s in p.subjects if s in done):
        crop = layout.crop(subject, labels=True)
        panels += lax_overlay_panels(subject, method, layout.recon(method, subject)["ED"],
                                     {v: crop[v] for v in p.views},
                                     {v: crop[f"label_{v}"] for v in p.views})
    lax_overlay_grid(panels, snakemake.output[0],
                     title=f"{method}: reconstruction (dashed) vs LAX labels (solid), ED")
