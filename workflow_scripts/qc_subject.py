import json

from cinerecon.align.estimate import AlignSettings
from cinerecon.io.files import atomic_path
from cinerecon.layout import Layout
from cinerecon.plots.qc import SubjectQCInputs, subject_qc_figure
from cinerecon.workflow import logged, use_threads

use_threads(snakemake.threads)

p, subject = snakemake.params, snakemake.wildcards.subject
with logged(snakemake.log[0], "qc_subject", subject):
    inputs = SubjectQCInputs.from_layout(Layout.of_manifest(snakemake.input[0]), subject,
                                         recon_method=p.recon_method, lax_labels=p.labelled)
    drawn = subject_qc_figure(inputs, snakemake.output.picture,
                              AlignSettings(sax_thickness_mm=p.sax_thickness_mm))
    drawn["align_method"] = p.align_method
    with atomic_path(snakemake.output.record) as tmp:
        tmp.write_text(json.dumps(drawn, indent=1, default=str) + "\n")
