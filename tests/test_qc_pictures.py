"""QC pictures: a subject's picture shows what was done to it (crop box, profiles before and
after the shifts, segmentation, reconstruction) and the cohort overview names its outliers."""

import dataclasses
import json

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from conftest import SMALL

from cinerecon.align import apply_shifts
from cinerecon.align.files import align_labels
from cinerecon.baselines.files import reconstruct_subject
from cinerecon.cohort.files import segmentation_record
from cinerecon.io.files import write_tsv
from cinerecon.io.nifti import frame_interval, load_nifti, save_nifti
from cinerecon.labels import lax_conventions
from cinerecon.layout import LAX_VIEWS, Layout
from cinerecon.phenotypes import PHENOTYPE_COLUMNS
from cinerecon.plots.qc import (
    SubjectQCInputs,
    cohort_qc_overview,
    intersection_profiles,
    qc_subjects,
    read_shifts,
    subject_qc_figure,
)
from cinerecon.preprocess.crop import crop_label_files, crop_subject_files
from cinerecon.synth.cohort import LabelPlan, generate_subject
from cinerecon.synth.scanner import AcquisitionConfig

VIEWS = ("sa", *LAX_VIEWS)
SUBJECT = "SYN0002"
INJECTED_SLICE = 5
INJECTED_MM = np.array([4.0, -3.0])   # the slice moved by this much during its breath-hold


def read_png(path):
    assert path.exists() and path.stat().st_size > 20_000
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # written atomically
    return mpimg.imread(path)


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    """A still smooth phantom (no breath-hold motion, ED/ES labels) taken through the
    pipeline's own file steps: crop, a SAX slice displaced by a known shift, the alignment's
    files with that shift, segmentation record, linear reconstruction."""
    layout = Layout(tmp_path_factory.mktemp("results"))
    acq = AcquisitionConfig.from_dict({"phantom": "smooth", **SMALL, "n_frames": 12,
                                       "sax_shift_rms_mm": 0.0, "lax_shift_rms_mm": 0.0})
    files = generate_subject(SUBJECT, 5, 2, layout.synthetic(SUBJECT), acq,
                             LabelPlan(frames="ed_es", lax=lax_conventions("full")))
    crop = layout.crop(SUBJECT, labels=True)
    crop_subject_files(SUBJECT, {v: files[v] for v in VIEWS}, {v: crop[v] for v in VIEWS},
                       layout.crop_record(SUBJECT), (64, 64), (72, 72))
    crop_label_files(SUBJECT, {v: files[f"label_{v}"] for v in VIEWS}, layout.crop_record(SUBJECT),
                     {v: crop[f"label_{v}"] for v in VIEWS}, layout.centring(SUBJECT))
    # inject: slice k shows at p what lies at p - d (its anatomy moved by +d)
    sax, affine, header = load_nifti(crop["sa"], SUBJECT)
    spacing = np.linalg.norm(affine[:3, :2], axis=0)
    moved = np.zeros((sax.shape[2], 2))
    moved[INJECTED_SLICE] = INJECTED_MM
    save_nifti(crop["sa"], apply_shifts(sax, -moved, spacing), affine, frame_interval(header))
    # the alignment's outputs, with the known answer as its estimate
    aligned = layout.aligned(SUBJECT)
    write_tsv(aligned["shifts"], pd.DataFrame({"slice": np.arange(len(moved)), "dx_mm": moved[:, 0],
                                               "dy_mm": moved[:, 1], "sd_mm": 0.1, "confidence": "high",
                                               "method": "intensity"}))
    corrected = apply_shifts(load_nifti(crop["sa"], SUBJECT)[0], moved, spacing)
    save_nifti(aligned["sa"], corrected, affine, frame_interval(header))
    align_labels(SUBJECT, crop["label_sa"], aligned["shifts"], aligned["label_sa"])
    # the "predicted" segmentation: the aligned labels (ED and ES labelled)
    layout.seg(SUBJECT).parent.mkdir(parents=True, exist_ok=True)
    layout.seg(SUBJECT).write_bytes(aligned["label_sa"].read_bytes())
    segmentation_record(SUBJECT, layout.seg(SUBJECT), layout.seg_record(SUBJECT),
                        layout.cohort_phenotypes("seg", SUBJECT))
    recon = layout.cohort_recon("linear", SUBJECT)
    reconstruct_subject(SUBJECT, layout.seg(SUBJECT), "linear", 2.0, {p: recon[p] for p in ("ED", "ES")},
                        recon["record"])
    inputs = dataclasses.replace(SubjectQCInputs.from_layout(layout, SUBJECT, "linear", lax_labels=True),
                                 full={v: files[v] for v in VIEWS})   # synthetic cines = ingest's output
    truth = json.loads(files["truth_phenotypes"].read_text())
    return {"layout": layout, "inputs": inputs, "es_frame": truth["es_frame"]}


@pytest.fixture(scope="module")
def drawn(subject, tmp_path_factory):
    path = tmp_path_factory.mktemp("qc") / f"{SUBJECT}.png"
    return path, subject_qc_figure(subject["inputs"], path)


def test_profiles_match_better_after_the_injected_shift_is_undone(drawn):
    path, info = drawn
    assert json.loads(json.dumps(info)) == info   # plain types: a rule can write it as json
    profiles = info["profiles"]
    assert profiles["present"] and profiles["method"] == "intensity"
    # the shift printed is the one in shifts.tsv
    assert np.allclose(profiles["shifts_mm"][INJECTED_SLICE], INJECTED_MM)
    assert not np.any(np.delete(np.asarray(profiles["shifts_mm"]), INJECTED_SLICE, axis=0))
    assert profiles["mismatch_after"] < 0.8 * profiles["mismatch_before"]
    for view in LAX_VIEWS:
        entry = profiles["views"][view]
        assert INJECTED_SLICE in entry["slices"]
        assert entry["mismatch_after"] < entry["mismatch_before"]
        assert np.abs(entry["lax_offset_mm"]).max() <= 1.0   # the LAX views did not move
    image = read_png(path)
    assert image.shape[0] > 1500 and image.shape[1] >= 1600


def test_injected_slice_profile_mismatch_drops_and_a_wrong_shift_raises_it(subject):
    inputs = subject["inputs"]
    sax, affine, _ = load_nifti(inputs.crop["sa"])
    laxes = {v: load_nifti(inputs.crop[v])[:2] for v in LAX_VIEWS}
    shifts, _ = read_shifts(inputs.shifts)
    right = intersection_profiles(sax, affine, laxes, shifts, lax_offsets=False)
    before, after = right["slices"][INJECTED_SLICE]
    assert after < 0.5 * before
    others = [k for k in right["slices"] if k != INJECTED_SLICE]
    assert all(right["slices"][k][0] == right["slices"][k][1] for k in others)   # unshifted slices unchanged
    wrong = intersection_profiles(sax, affine, laxes, -shifts, lax_offsets=False)
    assert wrong["slices"][INJECTED_SLICE][1] > before   # shifting the wrong way makes it worse


def test_subject_picture_draws_crop_segmentation_and_reconstruction(drawn, subject):
    _, info = drawn
    layout = subject["layout"]
    record = json.loads(layout.crop_record(SUBJECT).read_text())
    assert info["crop"]["present"] and info["crop"]["boxes"] == record["boxes"]
    assert info["crop"]["mid_slice"] == load_nifti(subject["inputs"].full["sa"])[0].shape[2] // 2
    seg = info["segmentation"]
    assert seg["present"] and seg["frames"] == {"ED": 0, "ES": subject["es_frame"]}
    assert seg["voxels"]["ES"]["LVC"] < seg["voxels"]["ED"]["LVC"]
    recon = info["recon"]
    assert recon["present"] and recon["method"] == "linear"
    for view in LAX_VIEWS:
        for phase in ("ED", "ES"):
            entry = recon["views"][view][phase]
            assert entry["present"] and entry["lax_labels"] and entry["recon_pixels"] > 100


def test_missing_segmentation_and_reconstruction_draw_absent_panels(subject, tmp_path):
    inputs = subject["inputs"]
    missing = dataclasses.replace(inputs, seg=None, seg_record=tmp_path / "cine.json",
                                  recon={p: tmp_path / f"{p}.nii.gz" for p in ("ED", "ES", "record")},
                                  lax_labels=None, shifts=tmp_path / "shifts.tsv")
    path = tmp_path / "qc.png"
    info = subject_qc_figure(missing, path)
    assert info["segmentation"] == {"present": False, "reason": "no segmentation"}
    assert not info["recon"]["present"] and "missing" in info["recon"]["reason"]
    assert not info["profiles"]["present"] and "shifts.tsv" in info["profiles"]["reason"]
    assert info["crop"]["present"]
    read_png(path)


def test_qc_subjects_is_bounded_and_deterministic():
    subjects = [f"SYN{i:04d}" for i in range(100)]
    chosen = qc_subjects(subjects, 10, seed=3)
    assert len(chosen) == 10 and set(chosen) <= set(subjects)
    assert chosen == qc_subjects(subjects, 10, seed=3)
    assert chosen == [s for s in subjects if s in chosen]                 # the sheet's order
    assert chosen == qc_subjects(subjects[::-1], 10, seed=3)[::-1]        # not the list's order
    assert qc_subjects(subjects, 10, seed=4) != chosen
    grown = qc_subjects(subjects + [f"NEW{i}" for i in range(10)], 10, seed=3)
    assert set(grown) - {s for s in grown if s.startswith("NEW")} <= set(chosen)
    assert qc_subjects(subjects, None) == subjects == qc_subjects(subjects, 0)
    assert qc_subjects(subjects[:3], 10) == subjects[:3]
    with pytest.raises(ValueError):
        qc_subjects(subjects, -1)


def cohort_tables(n=30, seed=0):
    """Shifts, LAX Dice and phenotypes without outliers: bounded (uniform) values only."""
    rng = np.random.default_rng(seed)
    subjects = [f"SYN{i:04d}" for i in range(n)]
    shifts = pd.DataFrame([{"subject": s, "slice": k, "dx_mm": rng.uniform(-2, 2), "dy_mm": rng.uniform(-2, 2),
                            "method": "intensity"} for s in subjects for k in range(9)])
    dice = pd.DataFrame([{"subject": s, "method": m, "phase": p, "view": "4ch", "structure": "LVC",
                          "dice": rng.uniform(0.8, 0.95)} for s in subjects[:12] for m in ("nn", "linear")
                         for p in ("ED", "ES")])
    phenotypes = pd.DataFrame({c: rng.uniform(100, 200, n) for c in PHENOTYPE_COLUMNS})
    phenotypes.insert(0, "subject", subjects)
    phenotypes.insert(1, "method", "seg")
    other = phenotypes.assign(method="linear", LVEDV=5000.0)   # another method's rows are not read
    return shifts, dice, pd.concat([phenotypes, other], ignore_index=True)


def test_overview_names_exactly_the_planted_outlier(tmp_path):
    shifts, dice, phenotypes = cohort_tables()
    phenotypes.loc[(phenotypes["subject"] == "SYN0017") & (phenotypes["method"] == "seg"), "LVEDV"] = 900.0
    path = tmp_path / "overview.png"
    outliers = cohort_qc_overview(shifts, dice, phenotypes, path)
    assert list(outliers.columns) == ["quantity", "subject", "value", "why"]
    assert outliers[["quantity", "subject", "value"]].values.tolist() == [["LVEDV", "SYN0017", 900.0]]
    assert "outside plausible" in outliers["why"].iloc[0]
    read_png(path)
    # without the plant nobody is named
    assert cohort_qc_overview(*cohort_tables(), tmp_path / "clean.png").empty


def test_overview_names_shift_dice_missing_and_caps_the_count(tmp_path):
    shifts, dice, phenotypes = cohort_tables()
    shifts.loc[shifts["subject"] == "SYN0004", ["dx_mm", "dy_mm"]] *= 5
    dice.loc[(dice["subject"] == "SYN0002") & (dice["method"] == "linear"), "dice"] = 0.3
    seg = phenotypes["method"] == "seg"
    for subject, value in (("SYN0010", 360.0), ("SYN0011", 380.0), ("SYN0012", 400.0)):
        phenotypes.loc[seg & (phenotypes["subject"] == subject), "LVM"] = value
    phenotypes.loc[seg & (phenotypes["subject"] == "SYN0020"), "RVEF"] = np.nan
    outliers = cohort_qc_overview(shifts, dice, phenotypes, tmp_path / "overview.png", n_outliers=2)
    named = {q: g["subject"].tolist() for q, g in outliers.groupby("quantity", sort=False)}
    assert named["rms_shift_mm"] == ["SYN0004"] and named["max_shift_mm"] == ["SYN0004"]
    assert named["dice:linear"] == ["SYN0002"] and "dice:nn" not in named
    assert named["LVM"] == ["SYN0012", "SYN0011"]            # the two farthest of three
    assert named["RVEF"] == ["SYN0020"]
    assert outliers.loc[outliers["quantity"] == "RVEF", "why"].tolist() == ["missing"]
