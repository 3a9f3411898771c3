"""Per-subject file steps of the cohort outputs: the predicted segmentation's phenotypes and
QC record, and the phenotypes of reconstructions from predicted labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cinerecon.cohort.qc import QCSettings, qc_flags
from cinerecon.io.files import write_json, write_parquet
from cinerecon.io.nifti import frame_interval, load_nifti
from cinerecon.io.subject import label_ed_es
from cinerecon.labels import LVC, RVC
from cinerecon.phenotypes import PHENOTYPE_COLUMNS, phenotypes, volume_curve_ml

# Columns of a cohort phenotype row, in table order (CO in L/min, heart rate in bpm).
COHORT_COLUMNS = (*PHENOTYPE_COLUMNS, "LVCO", "RVCO", "heart_rate_bpm", "ed_frame", "es_frame")


def heart_rate(n_frames: int, frame_interval_s: float | None, meta_path=None) -> tuple[float, str]:
    """(beats per minute, source): the DICOM header's heart rate or R-R interval when ingest
    recorded one (meta.json), otherwise one beat spread over the cine's frames (UK Biobank
    cines are retrospectively gated over one R-R interval); NaN when neither is known."""
    if meta_path is not None and Path(meta_path).exists():
        meta = json.loads(Path(meta_path).read_text())
        if meta.get("heart_rate_bpm"):
            return float(meta["heart_rate_bpm"]), f"dicom {meta.get('heart_rate_source')}"
    if frame_interval_s:
        return 60.0 / (frame_interval_s * n_frames), "frame interval x frames"
    return float("nan"), "unknown"


def with_cardiac_output(row: dict, bpm: float) -> dict:
    """Adds LVCO and RVCO (L/min) = stroke volume (mL) x heart rate / 1000."""
    return {**row, "LVCO": row["LVSV"] * bpm / 1000.0, "RVCO": row["RVSV"] * bpm / 1000.0}


def segmentation_record(subject: str, seg_path, record_path, phenotype_path, meta_path=None,
                        qc: QCSettings = QCSettings()) -> dict:
    """ED/ES from the predicted LV volume curve, the stack's phenotypes (method `seg`), heart
    rate, cardiac output and QC flags of one subject's predicted SAX segmentation cine.

    Writes the record (json: frames, curves, QC) and the phenotype row (parquet).
    """
    seg, affine, header = load_nifti(seg_path, subject)
    frames = label_ed_es(subject, seg_path, seg, affine)
    row = phenotypes(seg[..., frames["ED"]], seg[..., frames["ES"]], affine)
    bpm, source = heart_rate(seg.shape[3], frame_interval(header), meta_path)
    flags = qc_flags(seg, frames, row, qc)
    record = {
        "subject": subject, "frames": frames, "n_frames": int(seg.shape[3]),
        "heart_rate_bpm": bpm, "heart_rate_source": source,
        "lv_volume_ml": volume_curve_ml(seg, affine, LVC).round(3).tolist(),
        "rv_volume_ml": volume_curve_ml(seg, affine, RVC).round(3).tolist(),
        "qc_pass": not flags, "qc_flags": flags,
    }
    write_json(record_path, record)
    write_phenotype_row(phenotype_path, subject, "seg", row, record)
    return record


def write_phenotype_row(path, subject: str, method: str, row: dict, record: dict) -> None:
    full = with_cardiac_output(row, record["heart_rate_bpm"])
    full.update(heart_rate_bpm=record["heart_rate_bpm"], ed_frame=record["frames"]["ED"],
                es_frame=record["frames"]["ES"])
    write_parquet(path, pd.DataFrame([{"subject": subject, "method": method,
                                       **{c: full[c] for c in COHORT_COLUMNS}}]))


def recon_phenotype_row(subject: str, method: str, recon_paths: dict, recon_record_path, seg_record_path,
                        phenotype_path, same_frames: bool = True) -> None:
    """Phenotypes of a reconstruction, with the subject's heart rate and the reconstruction's
    ED/ES frames. same_frames: the reconstruction was built from the predicted segmentation,
    so its frames must be the segmentation record's (the generative methods take a labelled
    subject's ED/ES from its manual labels instead)."""
    record = json.loads(Path(seg_record_path).read_text())
    recon = json.loads(Path(recon_record_path).read_text())
    if same_frames and recon["frames"] != record["frames"]:  # both from label_ed_es on one cine
        raise RuntimeError(f"subject {subject}: {method} reconstructed frames {recon['frames']}, "
                           f"the segmentation record has {record['frames']}")
    ed, affine, _ = load_nifti(recon_paths["ED"], subject)
    es, _, _ = load_nifti(recon_paths["ES"], subject)
    write_phenotype_row(phenotype_path, subject, method, phenotypes(np.asarray(ed), np.asarray(es), affine),
                        {**record, "frames": recon["frames"]})
