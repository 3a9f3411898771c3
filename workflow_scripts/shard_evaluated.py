from cinerecon.batch import subject_status
from cinerecon.io.files import write_tsv
from cinerecon.workflow import logged, use_threads

use_threads(snakemake.threads)

with logged(snakemake.log[0], "shard_evaluated") as log:
    table = subject_status(snakemake.input.evaluations, snakemake.params.shard["subjects"])
    write_tsv(snakemake.output[0], table)
    log.info("%d of %d subjects evaluated", (table["status"] == "ok").sum(), len(table))
