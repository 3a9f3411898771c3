from cinerecon.evaluate import lax_overlay_panels
from cinerecon.plots import lax_overlay_grid
from cinerecon.workflow import logged

method = snakemake.wildcards.method
subjects, views = snakemake.params.subjects, snakemake.params.views
with logged(snakemake.log[0], f"lax_overlay[{method}]"):
    panels = []
    for i, subject in enumerate(subjects):
        # expand() orders images and labels subject-major, view-minor
        own = slice(i * len(views), (i + 1) * len(views))
        panels += lax_overlay_panels(subject, method, snakemake.input.recon[i],
                                     dict(zip(views, snakemake.input.images[own])),
                                     dict(zip(views, snakemake.input.labels[own])))
    lax_overlay_grid(panels, snakemake.output[0],
                     title=f"{method}: reconstruction (dashed) vs LAX labels (solid), ED")
