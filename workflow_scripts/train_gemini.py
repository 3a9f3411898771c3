from cinerecon.batch import ok_subjects
from cinerecon.layout import Layout
from cinerecon.models.seg_files import default_device
from cinerecon.stages import Subject
from cinerecon.superres.files import train_gemini_files
from cinerecon.superres.stages import subject_files
from cinerecon.workflow import logged, training_job_for, use_threads

use_threads(snakemake.threads)

p, inp, method = snakemake.params, snakemake.input, snakemake.wildcards.method
with logged(snakemake.log[0], f"train_gemini[{method}]") as log:
    layout = Layout.of_manifest(inp.aligned[0])
    done = set(ok_subjects(inp.aligned)) & set(ok_subjects(inp.synth))
    subjects = {s: subject_files(layout, Subject(s)) for s in p.subjects if s in done}
    history = train_gemini_files(subjects, p.settings, method, dict(snakemake.output), default_device(),
                                 job=training_job_for(snakemake, snakemake.output.model))
    log.info("last step: %s", history[-1] if history else None)
