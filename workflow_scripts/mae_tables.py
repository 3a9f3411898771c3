from cinerecon.batch import ok_subjects
from cinerecon.layout import Layout
from cinerecon.mae.stages import KINDS
from cinerecon.mae.tables import mae_tables
from cinerecon.tables.cohort import read_rows, write_table
from cinerecon.workflow import logged, use_threads

use_threads(snakemake.threads)

with logged(snakemake.log[0], "mae_tables") as log:
    layout = Layout.of_manifest(snakemake.input[0])
    subjects = ok_subjects(snakemake.input)  # a failed subject is in subject_status, not here
    rows = {kind: read_rows([layout.eval_mae(kind, s) for s in subjects]) for kind in KINDS}
    for name, table in mae_tables(rows).items():
        write_table(table, snakemake.output[name.removeprefix("mae_")].removesuffix(".md"))
        log.info("%s:\n%s", name, table.to_string(index=False))
