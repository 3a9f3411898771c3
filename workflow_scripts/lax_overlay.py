from cinerecon.evaluate import lax_overlay_panels
from cinerecon.plots import lax_overlay_grid
from cinerecon.workflow import logged

method, results = snakemake.wildcards.method, snakemake.params.results
with logged(snakemake.log[0], f"lax_overlay[{method}]"):
    panels = []
    for subject in snakemake.params.subjects:
        crop = f"{results}/crop/{subject}"
        panels += lax_overlay_panels(
            subject, method, f"{results}/recon/{method}/{subject}/label_ed.nii.gz",
            {v: f"{crop}/{v}.nii.gz" for v in snakemake.params.views},
            {v: f"{crop}/label_{v}.nii.gz" for v in snakemake.params.views})
    lax_overlay_grid(panels, snakemake.output[0], title=f"{method}: reconstruction (dashed) vs LAX labels (solid), ED")
