from cinerecon.batch import ok_subjects
from cinerecon.io.files import write_tsv
from cinerecon.layout import Layout
from cinerecon.tables import frame_from_json
from cinerecon.workflow import logged, use_threads

use_threads(snakemake.threads)

with logged(snakemake.log[0], "centring_table"):
    layout, labelled = Layout.of_manifest(snakemake.input[0]), set(snakemake.params.labelled)
    done = [s for s in ok_subjects(snakemake.input) if s in labelled]
    write_tsv(snakemake.output[0], frame_from_json([layout.centring(s) for s in done]))
