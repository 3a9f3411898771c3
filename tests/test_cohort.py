"""Cohort outputs for every subject: ED/ES and phenotypes from predicted segmentations,
cardiac output, QC flags and the cohort table."""

import json

import numpy as np
import pandas as pd
import pytest

from cinerecon.cohort.files import COHORT_COLUMNS, heart_rate, segmentation_record
from cinerecon.cohort.qc import QCSettings, qc_flags
from cinerecon.cohort.table import cohort_agreement, cohort_table
from cinerecon.io.nifti import save_nifti
from cinerecon.phenotypes import phenotypes

SPACING = np.diag([1.5, 1.5, 10.0, 1.0])  # 0.0225 mL voxels


def heart_cine(radii, n_slices=8):
    """Dense predicted-looking cine: per frame an LV disc of radius r (px) in a 4 px ring and
    a fixed RV block, on slices 1..n-2 (a short-axis stack of a cylinder)."""
    x, y = np.mgrid[:64, :64]
    d = np.hypot(x - 30, y - 30)
    cine = np.zeros((64, 64, n_slices, len(radii)), np.uint8)
    for t, r in enumerate(radii):
        sl = np.zeros((64, 64), np.uint8)
        sl[d <= r + 4] = 2
        sl[d <= r] = 1
        sl[(x > 45) & (x < 46 + r) & (y > 20) & (y < 40)] = 3
        cine[:, :, 1:-1, t] = sl[..., None]
    return cine


RADII = [14, 13, 11, 9, 8, 9, 11, 13]  # ES at frame 4


def test_a_plausible_segmentation_passes_qc():
    cine = heart_cine(RADII)
    frames = {"ED": 0, "ES": 4}
    row = phenotypes(cine[..., 0], cine[..., 4], SPACING)
    assert 30 < row["LVEDV"] < 450 and 10 < row["LVEF"] < 90
    assert qc_flags(cine, frames, row) == []


def test_qc_names_each_failed_check():
    cine = heart_cine(RADII)
    cine[:, :, 2, 0][cine[:, :, 2, 0] == 1] = 2        # a gap in the LV at ED (slice 2)
    cine[:, :, 4, 0][cine[:, :, 4, 0] == 3] = 0        # no RV on the mid-ventricular slice (LV on 1-6)
    cine[..., 4][cine[..., 4] == 3] = 0                # no RV at ES at all
    row = phenotypes(cine[..., 0], cine[..., 4], SPACING)
    flags = qc_flags(cine, {"ED": 0, "ES": 4}, row, QCSettings(min_slices=7))
    text = "\n".join(flags)
    assert "RVC has 0 voxels at ES (< 10)" in text
    assert "LV blood pool on 5 slice(s) at ED (< 7)" in text
    assert "LV blood pool missing on slice(s) [2] inside its extent at ED" in text
    assert "no RVC on the mid-ventricular slice 4 at ED" in text
    assert "RVEF" in text and "outside" in text


def test_qc_settings_reject_unknown_keys_and_merge_plausible_ranges():
    with pytest.raises(ValueError, match="unknown QC setting"):
        QCSettings.from_dict({"min_pixels": 3})
    settings = QCSettings.from_dict({"plausible": {"LVEF": [50, 60]}})
    assert settings.plausible["LVEF"] == (50, 60) and settings.plausible["LVEDV"] == (30.0, 450.0)


def test_segmentation_record_finds_es_on_the_predicted_curve_with_cardiac_output(tmp_path):
    cine = heart_cine(RADII)
    frame_s = 60.0 / 75 / len(RADII)  # 75 bpm, one beat over the cine
    save_nifti(tmp_path / "seg_sa.nii.gz", cine, SPACING, frame_s)
    record = segmentation_record("S1", tmp_path / "seg_sa.nii.gz", tmp_path / "cine.json", tmp_path / "seg.parquet")
    assert record["frames"] == {"ED": 0, "ES": 4} and record["qc_pass"]
    assert record["heart_rate_bpm"] == pytest.approx(75.0, rel=1e-5)
    row = pd.read_parquet(tmp_path / "seg.parquet").iloc[0]
    assert list(row.index) == ["subject", "method", *COHORT_COLUMNS] and row["method"] == "seg"
    assert row["LVCO"] == pytest.approx(row["LVSV"] * 75 / 1000, rel=1e-5)
    assert row["es_frame"] == 4 and json.loads((tmp_path / "cine.json").read_text())["lv_volume_ml"][4] == pytest.approx(row["LVESV"], abs=1e-3)


def test_heart_rate_prefers_the_dicom_header_and_is_nan_when_unknown(tmp_path):
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"heart_rate_bpm": 61.0, "heart_rate_source": "HeartRate"}))
    assert heart_rate(50, 0.02, meta) == (61.0, "dicom HeartRate")
    assert heart_rate(50, 0.02, tmp_path / "absent.json")[0] == pytest.approx(60.0)
    assert np.isnan(heart_rate(50, None)[0])


def test_cohort_table_keeps_a_row_for_every_subject_and_method():
    sheet = pd.DataFrame({"subject": ["A", "B", "C"], "split": ["train", "test", "test"],
                          "has_labels": [True, False, False]})
    values = {c: 1.0 for c in COHORT_COLUMNS}
    rows = pd.DataFrame([{"subject": s, "method": m, **values} for s in ("A", "B") for m in ("seg", "nn")]
                        + [{"subject": "B", "method": "truth", **values}])
    records = {"A": {"qc_pass": True, "qc_flags": []}, "B": {"qc_pass": False, "qc_flags": ["x", "y"]}}
    status = pd.DataFrame({"subject": ["A", "B", "C"], "status": ["ok", "ok", "failed"],
                           "stage": ["", "", "ingest"], "reason": ["", "", "subject C: sa.nii.gz: all zeros"]})
    table = cohort_table(sheet, rows, records, status, ["seg", "nn"])
    assert len(table) == 6 and list(table["subject"]) == ["A", "A", "B", "B", "C", "C"]
    c = table[table["subject"] == "C"]
    assert (c["status"] == "failed").all() and c["reason"].str.contains("ingest: subject C").all()
    assert c["LVEF"].isna().all()
    assert table.loc[table["subject"] == "B", "qc_flags"].iloc[0] == "x; y"
    assert not table.loc[table["subject"] == "B", "has_labels"].any()
    truth = pd.DataFrame([{"subject": s, "method": "truth", **{c: 0.5 for c in COHORT_COLUMNS}} for s in "ABC"])
    agreement = cohort_agreement(table, truth)
    unlabelled = agreement[(agreement["group"] == "unlabelled") & (agreement["phenotype"] == "LVEF")]
    assert list(unlabelled["method"]) == ["seg", "nn"] and (unlabelled["n"] == 1).all()
    assert (unlabelled["bias"] == 0.5).all()
