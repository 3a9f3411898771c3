import pandas as pd

from cinerecon.batch import ok_subjects
from cinerecon.io.files import write_tsv
from cinerecon.layout import Layout
from cinerecon.plots.qc import cohort_qc_overview, read_shift_tables
from cinerecon.tables.cohort import read_rows
from cinerecon.workflow import logged, use_threads

use_threads(snakemake.threads)

p, inp = snakemake.params, snakemake.input
with logged(snakemake.log[0], "qc_overview") as log:
    layout = Layout.of_manifest(inp.align[0])
    aligned = ok_subjects(inp.align)
    shifts = read_shift_tables({s: layout.aligned(s)["shifts"] for s in aligned})
    evaluated = set(ok_subjects(inp.lax)) if inp.lax else set()
    dice = read_rows([layout.eval_lax(m, s) for m in p.methods for s in p.eval_subjects
                      if s in evaluated and layout.eval_lax(m, s).exists()])
    phenotypes = pd.read_parquet(inp.phenotypes[0]) if inp.phenotypes else pd.DataFrame()
    outliers = cohort_qc_overview(shifts, dice, phenotypes, snakemake.output.picture)
    write_tsv(snakemake.output.outliers, outliers)
    log.info("%d outliers named", len(outliers))
