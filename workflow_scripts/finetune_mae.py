from cinerecon.batch import ok_subjects
from cinerecon.layout import Layout
from cinerecon.mae import files as F
from cinerecon.models.seg_files import default_device
from cinerecon.workflow import logged, training_job_for, use_threads

use_threads(snakemake.threads)

p, inp, head = snakemake.params, snakemake.input, snakemake.wildcards.head
with logged(snakemake.log[0], f"train_mae[{head}]") as log:
    layout = Layout.of_manifest(inp.data[0])
    done = set(ok_subjects(inp.data))
    subjects = {s: layout.mae_inputs(s) for s in p.subjects if s in done}
    outputs, device = dict(snakemake.output), default_device()
    job = training_job_for(snakemake, snakemake.output.model)
    if head == "resnet":
        history = F.train_resnet_files(subjects, p.settings, outputs, device, job=job)
    else:
        train = F.finetune_phenotypes_files if head == "phenotypes" else F.finetune_segmentation_files
        history = train(subjects, inp.pretrained[0], p.settings, outputs, device, job=job)
    log.info("last step: %s", history[-1] if history else None)
