"""UK Biobank-shaped labels: ES from sparse label cines (one rule for every consumer), the
LAX label conventions at ingest and in evaluation, and the synthetic cohort's label plan."""

import nibabel as nib
import numpy as np
import pytest

from cinerecon.io.nifti import InputError, load_nifti, save_nifti
from cinerecon.io.subject import VIEWS
from cinerecon.labels import LA, LVC, RA, lax_conventions
from cinerecon.phenotypes import LabelFramesError, ed_es_frames, phenotypes_from_cine

AFFINE = np.diag([2.0, 2.0, 10.0, 1.0])  # 0.04 mL voxels
VOXEL_ML = 0.04


def ed_es_only_cine(n_frames=30, es=12, ed_radius=6, es_radius=4, n_slices=6):
    """Discs of LV blood pool in a myocardial ring and an RV at frames 0 and `es`; all other
    frames are background, as UK Biobank's manual labels."""
    x, y = np.mgrid[:32, :32]
    cine = np.zeros((32, 32, n_slices, n_frames), np.uint8)
    for t, r in ((0, ed_radius), (es, es_radius)):
        d = np.hypot(x - 14, y - 14)
        sl = np.zeros((32, 32), np.uint8)
        sl[d <= r + 2] = 2
        sl[d <= r] = 1
        sl[(x > 22) & (x < 29) & (y > 8) & (y < 20)] = 3
        cine[..., t] = sl[..., None]
    return cine


def test_es_of_an_ed_es_only_label_cine_is_its_second_labelled_frame():
    """The issue's case: 30 frames labelled at 0 and 12 gave ES = 1, LVESV 0 mL, LVEF 100 %."""
    cine = ed_es_only_cine()
    assert ed_es_frames(cine, AFFINE) == {"ED": 0, "ES": 12}
    row = phenotypes_from_cine(cine, AFFINE)
    lv_ed, lv_es = (cine[..., 0] == LVC).sum(), (cine[..., 12] == LVC).sum()
    assert row["es_frame"] == 12
    assert row["LVEDV"] == pytest.approx(lv_ed * VOXEL_ML) and row["LVESV"] == pytest.approx(lv_es * VOXEL_ML)
    assert 0 < row["LVESV"] < row["LVEDV"] and row["LVEF"] == pytest.approx(100 * (lv_ed - lv_es) / lv_ed)
    assert row["RVEF"] == pytest.approx(0.0)  # same RV at both frames


def test_dense_cines_keep_ed_frame_zero_and_es_at_the_minimum():
    cine = np.zeros((8, 8, 2, 5), np.uint8)
    for t, n in enumerate([20, 14, 6, 9, 18]):
        cine.reshape(-1, 2, 5)[:n, :, t] = LVC
    assert ed_es_frames(cine, np.eye(4)) == {"ED": 0, "ES": 2}


def test_es_is_never_ed_and_ed_falls_back_to_the_largest_lv_without_frame_zero():
    cine = np.zeros((8, 8, 1, 10), np.uint8)
    cine[:2, :2, 0, 3] = LVC   # small: ES
    cine[:4, :4, 0, 7] = LVC   # large: ED (frame 0 unlabelled)
    assert ed_es_frames(cine, np.eye(4)) == {"ED": 7, "ES": 3}
    two = np.zeros((8, 8, 1, 10), np.uint8)
    two[:2, :2, 0, 0] = LVC    # ED smaller than the other labelled frame: ES is still the other one
    two[:3, :3, 0, 5] = LVC
    assert ed_es_frames(two, np.eye(4)) == {"ED": 0, "ES": 5}


def test_a_single_labelled_frame_cannot_give_es():
    cine = np.zeros((8, 8, 1, 10), np.uint8)
    cine[:2, :2, 0, 0] = LVC
    with pytest.raises(LabelFramesError, match="only frame 0 carries labels"):
        ed_es_frames(cine, np.eye(4))
    with pytest.raises(LabelFramesError, match="no frame"):
        ed_es_frames(np.zeros_like(cine), np.eye(4))


@pytest.fixture
def sparse_subject(tmp_path):
    """An SAX image and an ED/ES-only label cine on disk (ES = frame 12 of 30)."""
    labels = ed_es_only_cine()
    image = (labels.astype(np.int16) * 300 + 50)
    image[..., 1:] = image[..., :1]  # every frame has an image
    save_nifti(tmp_path / "sa.nii.gz", image, AFFINE, 0.03)
    save_nifti(tmp_path / "label_sa.nii.gz", labels, AFFINE, 0.03)
    return tmp_path


def _consumer_frames(name, folder, tmp_path):
    """The (ED, ES) frames a pipeline consumer of manual SAX labels picks."""
    image, labels = folder / "sa.nii.gz", folder / "label_sa.nii.gz"
    if name == "phenotypes":
        return 0, phenotypes_from_cine(load_nifti(labels)[0], AFFINE)["es_frame"]
    if name == "reconstruction":
        from cinerecon.baselines.files import reconstruct_subject

        record = reconstruct_subject("S1", labels, "nn", 5.0, {p: tmp_path / f"{p}.nii.gz" for p in ("ED", "ES")},
                                     tmp_path / "recon.json")
        return record["frames"]["ED"], record["frames"]["ES"]
    if name == "training":
        from cinerecon.models.seg_files import training_frames

        lab, affine, _ = load_nifti(labels)
        return tuple(training_frames("S1", labels, lab, affine, "ed_es"))
    if name == "training_all_labelled":
        from cinerecon.models.seg_files import training_frames

        lab, affine, _ = load_nifti(labels)
        return tuple(training_frames("S1", labels, lab, affine, "all", stride=5))  # ES survives the stride
    if name == "inversion":
        from cinerecon.latent.deeprecon_files import subject_slices

        return tuple(subject_slices("S1", image, labels)["frames"])
    if name == "alignment":
        import cinerecon.align.correct as correct

        seen = {}

        class Stop(Exception):
            pass

        def capture(sax_ch, *args, **kwargs):
            seen["channels"] = sax_ch
            raise Stop

        lab = load_nifti(labels)[0]
        original = correct.AlignmentProblem
        correct.AlignmentProblem = capture
        try:
            with pytest.raises(Stop):
                correct.estimate_shifts("labels", load_nifti(image)[0], AFFINE, {"2ch": (np.zeros((8, 8, 1, 30)), np.eye(4))},
                                        lab, {"2ch": np.zeros((8, 8, 1, 30), np.uint8)})
        finally:
            correct.AlignmentProblem = original
        for frames in ([0, 12], [0, 1]):  # which frames did the aligner compare?
            if np.array_equal(seen["channels"], correct._onehot(lab[..., frames])):
                return tuple(frames)
        return None
    if name == "directseg":
        from cinerecon.models.seg_files import directseg_rows

        metrics, _ = directseg_rows("S1", labels, labels)
        return tuple(sorted(metrics["phase"].unique()))  # both phases scored, ES never empty
    if name == "reference":
        from cinerecon.evaluate import label_phenotype_row

        row = label_phenotype_row("S1", labels).iloc[0]
        return 0, 12 if row["LVESV"] > 0 and row["LVEF"] < 100 else -1
    if name == "heldout":
        from cinerecon.baselines.files import heldout_linear_rows

        rows = heldout_linear_rows("S1", image, labels)
        return tuple(sorted(rows["phase"].unique()))
    raise KeyError(name)


EXPECTED = {"phenotypes": (0, 12), "reconstruction": (0, 12), "training": (0, 12),
            "training_all_labelled": (0, 12), "inversion": (0, 12), "alignment": (0, 12),
            "directseg": ("ED", "ES"), "reference": (0, 12), "heldout": ("ED", "ES")}


@pytest.mark.parametrize("consumer", sorted(EXPECTED))
def test_every_consumer_of_manual_labels_finds_es_in_an_ed_es_only_cine(consumer, sparse_subject, tmp_path):
    assert _consumer_frames(consumer, sparse_subject, tmp_path) == EXPECTED[consumer]


def test_one_labelled_frame_is_refused_at_ingest_naming_subject_and_file(synth_subject, tmp_path):
    from cinerecon.preprocess.ingest import ingest_labels

    src = tmp_path / "src"
    src.mkdir()
    for view in VIEWS:
        (src / f"{view}.nii.gz").write_bytes(synth_subject[view].read_bytes())
        (src / f"label_{view}.nii.gz").write_bytes(synth_subject[f"label_{view}"].read_bytes())
    lab = nib.load(src / "label_sa.nii.gz")
    data = np.asanyarray(lab.dataobj).copy()
    data[..., 1:] = 0
    nib.save(nib.Nifti1Image(data, lab.affine), src / "label_sa.nii.gz")
    with pytest.raises(InputError, match=r"subject S9: .*label_sa.nii.gz: only frame 0 carries labels"):
        ingest_labels(src, "S9", {v: tmp_path / "out" / f"label_{v}.nii.gz" for v in VIEWS})
    assert not (tmp_path / "out").exists()


# ---- LAX label conventions -------------------------------------------------------------
def ukbb_folder(tmp_path, synth_subject, two_ch_values=None):
    """The synthetic subject's images with LAX labels written in the ukbb convention."""
    from cinerecon.synth.cohort import LabelPlan

    src = tmp_path / "ukbb_src"
    src.mkdir()
    plan = LabelPlan(frames="ed_es", lax=lax_conventions("ukbb"))
    for view in VIEWS:
        (src / f"{view}.nii.gz").write_bytes(synth_subject[view].read_bytes())
        lab = nib.load(synth_subject[f"label_{view}"])
        data = np.asanyarray(lab.dataobj)
        es = ed_es_frames(np.asanyarray(nib.load(synth_subject["label_sa"]).dataobj), lab.affine)["ES"]
        if view in plan.label_views():
            out = plan.file_labels(data, view, es)
            if view == "la_2ch" and two_ch_values is not None:
                out[out == 1] = two_ch_values
            nib.save(nib.Nifti1Image(out, lab.affine), src / f"label_{view}.nii.gz")
    return src


def test_ukbb_lax_labels_are_mapped_to_atria_and_3ch_may_be_missing(synth_subject, tmp_path):
    from cinerecon.preprocess.ingest import ingest_labels

    src = ukbb_folder(tmp_path, synth_subject)
    assert not (src / "label_la_3ch.nii.gz").exists()
    out = {v: tmp_path / "out" / f"label_{v}.nii.gz" for v in VIEWS}
    ingest_labels(src, "S1", out, lax=lax_conventions("ukbb"))
    raw_2ch = np.asanyarray(nib.load(src / "label_la_2ch.nii.gz").dataobj)
    got = {v: np.asanyarray(nib.load(out[v]).dataobj) for v in VIEWS}
    assert set(np.unique(raw_2ch)) == {0, 1}
    assert np.array_equal(got["la_2ch"] == LA, raw_2ch == 1) and not (got["la_2ch"] == LVC).any()
    assert set(np.unique(got["la_4ch"])) == {0, LA, RA}
    assert not got["la_3ch"].any()


def test_a_value_outside_the_declared_convention_is_refused_naming_subject_and_file(synth_subject, tmp_path):
    from cinerecon.preprocess.ingest import ingest_labels

    src = ukbb_folder(tmp_path, synth_subject, two_ch_values=3)  # "RVC" in a ukbb 2ch file
    out = {v: tmp_path / "out" / f"label_{v}.nii.gz" for v in VIEWS}
    with pytest.raises(InputError, match=r"subject S2: .*label_la_2ch.nii.gz: unexpected label values \[3\].*'ukbb'"):
        ingest_labels(src, "S2", out, lax=lax_conventions("ukbb"))
    assert not any(p.exists() for p in out.values())
    # declared `full` on the 2ch view (per-view conventions), the same file passes as RVC
    ingest_labels(src, "S2", out, lax=lax_conventions({"2ch": "full", "4ch": "ukbb"}))
    assert (np.asanyarray(nib.load(out["la_2ch"]).dataobj) == 3).any()


def test_a_2ch_left_atrium_is_never_scored_as_lv_cavity(smooth_subject, tmp_path):
    """Atria-only LAX labels give no LAX Dice rows; LV/RV-labelled views do (the smooth
    phantom: exact labels, so every view's Dice is high)."""
    synth_subject = smooth_subject
    from cinerecon.baselines.files import reconstruct_subject
    from cinerecon.evaluate import lax_rows
    from cinerecon.labels import lax_structures
    from cinerecon.preprocess.ingest import ingest_labels

    src = ukbb_folder(tmp_path, synth_subject)
    out = {v: tmp_path / "out" / f"label_{v}.nii.gz" for v in VIEWS}
    ingest_labels(src, "S1", out, lax=lax_conventions("ukbb"))
    recon = {p: tmp_path / f"{p}.nii.gz" for p in ("ED", "ES")}
    reconstruct_subject("S1", synth_subject["label_sa"], "nn", 2.0, recon, tmp_path / "recon.json")
    lax = {v: out[v] for v in VIEWS if v != "sa"}
    ukbb = lax_rows("S1", "nn", recon, tmp_path / "recon.json", lax,
                    {v: lax_structures("ukbb", v.removeprefix("la_")) for v in lax})
    assert ukbb.empty and list(ukbb.columns)[:5] == ["subject", "method", "phase", "view", "structure"]
    full = lax_rows("S1", "nn", recon, tmp_path / "recon.json", {v: synth_subject[f"label_{v}"] for v in lax},
                    {v: lax_structures("full", v.removeprefix("la_")) for v in lax})
    lvc = full[full["structure"] == "LVC"]
    assert len(lvc) == 6 and (lvc["dice"] > 0.7).all()  # 3 views x ED/ES


# ---- the synthetic cohort's label plan ----------------------------------------------------
def test_synthetic_sheet_labels_a_fraction_of_every_split_and_marks_annotated_test_subjects():
    from cinerecon.io.sheet import cohort_sheet, lax_of

    cohort = {"kind": "synthetic", "synthetic": {"n_subjects": 40, "seed": 3,
                                                 "splits": {"train": 0.5, "val": 0.25, "test": 0.25},
                                                 "labels": {"fraction": 0.2, "lax_full_test_subjects": 1}}}
    sheet = cohort_sheet(cohort)
    for split, size in sheet.groupby("split").size().items():
        assert sheet.loc[sheet["split"] == split, "has_labels"].sum() == round(0.2 * size)
    assert set(sheet.loc[~sheet["has_labels"], "lax_labels"]) == {"none"}
    full = sheet.index[sheet["lax_labels"] == "full"]
    assert len(full) == 1 and sheet.loc[full[0], "split"] == "test" and sheet.loc[full[0], "has_labels"]
    lax = lax_of(sheet, cohort)
    assert set(lax) == set(sheet.index[sheet["has_labels"]])
    assert lax[full[0]] == lax_conventions("full") and set(map(str, lax[sheet.index[sheet["has_labels"]][0]].values())) <= {"ukbb", "full"}


def test_ukbb_shaped_subject_files_hold_ed_es_sax_and_atria_lax_labels_and_full_truth(tmp_path, small_acq):
    import json

    from cinerecon.synth.cohort import LabelPlan, generate_subject

    labelled = generate_subject("SYN0010", 11, 10, tmp_path / "a", small_acq,
                                LabelPlan(frames="ed_es", lax=lax_conventions("ukbb")))
    truth = json.loads(labelled["truth_phenotypes"].read_text())
    sa = np.asanyarray(nib.load(labelled["label_sa"]).dataobj)
    assert [int(t) for t in np.flatnonzero(sa.reshape(-1, sa.shape[3]).any(0))] == [0, truth["es_frame"]]
    assert ed_es_frames(sa, nib.load(labelled["label_sa"]).affine)["ES"] == truth["es_frame"]
    assert "label_la_3ch" not in labelled
    assert set(np.unique(np.asanyarray(nib.load(labelled["label_la_2ch"]).dataobj))) == {0, 1}
    assert set(np.unique(np.asanyarray(nib.load(labelled["label_la_4ch"]).dataobj))) == {0, 1, 2}
    unlabelled = generate_subject("SYN0011", 11, 11, tmp_path / "b", small_acq, LabelPlan(frames=None))
    assert not [k for k in unlabelled if k.startswith("label_")]
    assert sorted(p.name for p in (tmp_path / "b").glob("label_*")) == []
    assert {"truth_ed", "truth_es", "truth_phenotypes", "truth_shifts"} <= set(unlabelled)
    phen = json.loads(unlabelled["truth_phenotypes"].read_text())
    assert phen["LVCO"] == pytest.approx(phen["LVSV"] * phen["heart_rate_bpm"] / 1000)


def test_lax_labels_at_their_own_es_are_read_at_that_frame(synth_subject, tmp_path):
    """A LAX view labelled at ED and at its own ES (a frame off the SAX stack's) is compared
    at those frames; a view missing from a labelled subject gives no rows."""
    from cinerecon.baselines.files import reconstruct_subject
    from cinerecon.evaluate import lax_rows

    recon = {p: tmp_path / f"{p}.nii.gz" for p in ("ED", "ES")}
    record = reconstruct_subject("S1", synth_subject["label_sa"], "nn", 2.0, recon, tmp_path / "recon.json")
    lab = nib.load(synth_subject["label_la_4ch"])
    dense = np.asanyarray(lab.dataobj)
    es = record["frames"]["ES"]
    sparse = np.zeros_like(dense)
    sparse[..., 0], sparse[..., es + 1] = dense[..., 0], dense[..., es + 1]   # its own ES, one frame later
    nib.save(nib.Nifti1Image(sparse, lab.affine), tmp_path / "label_la_4ch.nii.gz")
    rows = lax_rows("S1", "nn", recon, tmp_path / "recon.json", {"la_4ch": tmp_path / "label_la_4ch.nii.gz"})
    dense_rows = lax_rows("S1", "nn", recon, tmp_path / "recon.json", {"la_4ch": synth_subject["label_la_4ch"]})
    assert set(rows["phase"]) == {"ED", "ES"}
    ed = lambda r: r[(r["phase"] == "ED") & (r["structure"] == "LVC")]["dice"].iloc[0]  # noqa: E731
    assert ed(rows) == pytest.approx(ed(dense_rows))
    es_lvc = rows[(rows["phase"] == "ES") & (rows["structure"] == "LVC")]["dice"].iloc[0]
    assert es_lvc > 0.6


def test_a_missing_lax_label_file_of_a_labelled_subject_means_no_labels_on_that_view(synth_subject, tmp_path):
    from cinerecon.preprocess.ingest import ingest_labels

    src = ukbb_folder(tmp_path, synth_subject)
    (src / "label_la_4ch.nii.gz").unlink()
    out = {v: tmp_path / "out" / f"label_{v}.nii.gz" for v in VIEWS}
    ingest_labels(src, "S1", out, lax=lax_conventions("ukbb"))
    assert not np.asanyarray(nib.load(out["la_4ch"]).dataobj).any()
    with pytest.raises(InputError, match="label_sa.nii.gz: file is missing"):
        (src / "label_sa.nii.gz").unlink()
        ingest_labels(src, "S1", out, lax=lax_conventions("ukbb"))


def test_the_itksnap_label_description_names_every_label_value():
    """config/itksnap_labels.txt is the function's output, one line per pipeline value."""
    import shlex
    from pathlib import Path

    from cinerecon.labels import LAX_LABELS, itksnap_label_description

    text = (Path(__file__).parents[1] / "config/itksnap_labels.txt").read_text()
    assert text == itksnap_label_description()
    rows = [shlex.split(line) for line in text.splitlines() if not line.startswith("#")]
    assert [int(r[0]) for r in rows] == [0, *LAX_LABELS]
    for r in rows[1:]:
        assert LAX_LABELS[int(r[0])] in r[-1] and r[5] == r[6] == "1" and float(r[4]) == 1.0
