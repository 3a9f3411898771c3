from cinerecon.batch import subject_status
from cinerecon.io.files import write_tsv
from cinerecon.workflow import logged, use_threads

use_threads(snakemake.threads)

with logged(snakemake.log[0], "subject_status") as log:
    table = subject_status(snakemake.input, snakemake.params.subjects)
    write_tsv(snakemake.output[0], table)
    failed = table[table["status"] != "ok"]
    log.info("%d of %d subjects ok", len(table) - len(failed), len(table))
    for row in failed.itertuples():
        log.warning("subject %s %s at %s: %s", row.subject, row.status, row.stage, row.reason)
