import pandas as pd

from cinerecon.batch import ok_subjects
from cinerecon.layout import Layout
from cinerecon.superres.tables import ROW_COLUMNS, superres_tables
from cinerecon.tables.cohort import write_table
from cinerecon.workflow import logged, use_threads

use_threads(snakemake.threads)

with logged(snakemake.log[0], "superres_tables") as log:
    layout = Layout.of_manifest(snakemake.input[0])
    subjects = ok_subjects(snakemake.input)  # a failed subject is in subject_status, not here
    rows = pd.concat([pd.DataFrame(columns=ROW_COLUMNS)] + [pd.read_parquet(layout.eval_superres(s)) for s in subjects],
                     ignore_index=True)
    for name, table in superres_tables(rows).items():
        if name in snakemake.output.keys():
            write_table(table, snakemake.output[name].removesuffix(".md"))
            log.info("%s:\n%s", name, table.to_string(index=False))
