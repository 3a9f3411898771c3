from cinerecon.io.files import write_tsv
from cinerecon.tables import frame_from_json
from cinerecon.workflow import logged

with logged(snakemake.log[0], "centring_table"):
    write_tsv(snakemake.output[0], frame_from_json(snakemake.input))
