"""Shard stages of the cohort outputs (see cinerecon.stages for the outputs/run pairs)."""

from __future__ import annotations

from pathlib import Path

from cinerecon.cohort.files import recon_phenotype_row, segmentation_record
from cinerecon.cohort.qc import QCSettings
from cinerecon.layout import Layout


def seg_record_outputs(layout: Layout, s) -> list[Path]:
    return [layout.seg_record(s.id), layout.cohort_phenotypes("seg", s.id)]


def seg_record_run(layout: Layout, s, qc: dict | None = None) -> dict:
    """ED/ES, phenotypes, cardiac output and QC flags of the subject's predicted segmentation."""
    return segmentation_record(s.id, layout.seg(s.id), layout.seg_record(s.id), layout.cohort_phenotypes("seg", s.id),
                               layout.dicom_meta(s.id), QCSettings.from_dict(qc))


def recon_outputs(layout: Layout, s, method: str) -> list[Path]:
    return [*layout.cohort_recon(method, s.id).values(), layout.cohort_phenotypes(method, s.id)]


def recon_run(layout: Layout, s, method: str, target_spacing_mm: float) -> None:
    """A baseline's ED/ES volumes from the predicted segmentation, and their phenotypes."""
    from cinerecon.baselines.files import reconstruct_subject

    out = layout.cohort_recon(method, s.id)
    volumes = {"ED": out["ED"], "ES": out["ES"]}
    reconstruct_subject(s.id, layout.seg(s.id), method, target_spacing_mm, volumes, out["record"])
    recon_phenotype_row(s.id, method, volumes, out["record"], layout.seg_record(s.id),
                        layout.cohort_phenotypes(method, s.id))


def generative_outputs(layout: Layout, s, method: str) -> list[Path]:
    return [layout.cohort_phenotypes(method, s.id)]


def generative_run(layout: Layout, s, method: str) -> None:
    """Phenotypes of a generative method's reconstruction (results/recon/{method}/, every
    subject: ED/ES slices from the manual labels, or the predicted ones when unlabelled)."""
    recon = layout.recon(method, s.id)
    recon_phenotype_row(s.id, method, recon, recon["record"], layout.seg_record(s.id),
                        layout.cohort_phenotypes(method, s.id), same_frames=False)


def write_cohort_tables(sheet, seg_manifests, recon_manifests, upstream_manifests, methods: list[str],
                        with_truth: bool, tables_dir) -> None:
    """tables/cohort_phenotypes (parquet, CSV) from the shard manifests, and, with a known
    truth, tables/cohort_agreement (parquet, CSV, Markdown)."""
    import json

    from cinerecon.batch import ok_subjects, subject_status
    from cinerecon.cohort.table import cohort_agreement, cohort_table, truth_rows
    from cinerecon.io.files import atomic_path
    from cinerecon.tables.cohort import read_rows, write_table

    layout = Layout.of_manifest(seg_manifests[0])
    seg_ok = ok_subjects(seg_manifests)
    records = {s: json.loads(layout.seg_record(s).read_text()) for s in seg_ok}
    files = [layout.cohort_phenotypes("seg", s) for s in seg_ok]
    for path in recon_manifests:
        method = Path(path).parent.name.removeprefix("cohort-recon-")
        files += [layout.cohort_phenotypes(method, s) for s in ok_subjects([path])]
    status = subject_status(list(upstream_manifests), list(sheet["subject"]))
    table = cohort_table(sheet, read_rows(files), records, status, methods)
    tables_dir = Path(tables_dir)
    for ext, write in (("parquet", lambda t: table.to_parquet(t, index=False)),
                       ("csv", lambda t: table.to_csv(t, index=False))):
        with atomic_path(tables_dir / f"cohort_phenotypes.{ext}") as tmp:
            write(tmp)
    if with_truth:
        truth = truth_rows({s: layout.truth(s)["phenotypes"] for s in sheet["subject"]
                            if layout.truth(s)["phenotypes"].exists()})
        write_table(cohort_agreement(table, truth), tables_dir / "cohort_agreement")
