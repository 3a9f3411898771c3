from cinerecon.io.files import raw_nifti_files
from cinerecon.stages import ingest_dicom_outputs, ingest_dicom_run
from cinerecon.workflow import shard_stage, use_threads

use_threads(snakemake.threads)

p = snakemake.params
shard_stage(snakemake.log[0], "ingest_dicom", p.shard, snakemake.output[0], snakemake.input,
            ingest_dicom_outputs, ingest_dicom_run, params=p,
            raw_files=lambda s: [*p.zips[s.id], *raw_nifti_files(p.label_folders[s.id])],
            zips=p.zips, label_folders=p.label_folders)
