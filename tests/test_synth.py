import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from cinerecon.geometry import resample_labels_to_plane
from cinerecon.metrics import dice
from cinerecon.synth import heart as H
from cinerecon.synth.cohort import generate_subject, make_sheet


def data(path):
    return np.asanyarray(nib.load(path).dataobj)


def test_subject_files_follow_ukbb_layout(synth_subject, small_acq):
    sa = nib.load(synth_subject["sa"])
    assert sa.shape[:2] == small_acq.sax_matrix and sa.shape[3] == small_acq.n_frames
    assert 9 <= sa.shape[2] <= 16
    assert np.allclose(sa.header.get_zooms()[:3], [small_acq.pixel_mm] * 2 + [10.0], atol=1e-3)
    for view in ("2ch", "3ch", "4ch"):
        la = nib.load(synth_subject[f"la_{view}"])
        assert la.shape == small_acq.lax_matrix + (1, small_acq.n_frames)
        lab = data(synth_subject[f"label_la_{view}"])
        assert lab.dtype == np.uint8 and set(np.unique(lab)) <= {0, 1, 2, 3, 4, 5}
    label_sa = data(synth_subject["label_sa"])
    assert label_sa.shape == sa.shape and set(np.unique(label_sa)) == {0, 1, 2, 3}


def test_lax_affines_cut_the_true_anatomy(unshifted_subject):
    """Sampling the truth volume on each LAX plane reproduces the LAX labels (no shifts)."""
    truth = nib.load(unshifted_subject["truth_ed"])
    truth_labels = np.asanyarray(truth.dataobj)
    for view in ("2ch", "3ch", "4ch"):
        la = nib.load(unshifted_subject[f"label_la_{view}"])
        lab = np.asanyarray(la.dataobj)[:, :, 0, 0]
        sampled = resample_labels_to_plane(truth_labels, truth.affine, la.affine, lab.shape)
        for k in range(1, 6):
            if (lab == k).sum() >= 150:  # structures with a real section in this view
                assert dice(sampled == k, lab == k) >= 0.95, (view, k)
        assert dice(sampled == 1, lab == 1) >= 0.97


def test_true_phenotypes_match_voxel_count_of_truth(unshifted_subject):
    phen = json.loads(open(unshifted_subject["truth_phenotypes"]).read())
    ed_img = nib.load(unshifted_subject["truth_ed"])
    voxel_ml = abs(np.linalg.det(ed_img.affine[:3, :3])) / 1000
    ed, es = data(unshifted_subject["truth_ed"]), data(unshifted_subject["truth_es"])
    count = {
        "LVEDV": (ed == 1).sum() * voxel_ml, "LVESV": (es == 1).sum() * voxel_ml,
        "RVEDV": (ed == 3).sum() * voxel_ml, "RVESV": (es == 3).sum() * voxel_ml,
        "LVM": (ed == 2).sum() * voxel_ml * 1.05,
    }
    for key, value in count.items():
        assert value == pytest.approx(phen[key], rel=0.02), key
    assert phen["LVEF"] == pytest.approx(100 * phen["LVSV"] / phen["LVEDV"])


def test_es_is_minimal_lv_volume_and_labels_agree(unshifted_subject):
    phen = json.loads(open(unshifted_subject["truth_phenotypes"]).read())
    label_sa = data(unshifted_subject["label_sa"])
    lv_per_frame = (label_sa == 1).sum(axis=(0, 1, 2))
    assert int(np.argmin(lv_per_frame)) == phen["es_frame"]


def test_same_seed_gives_identical_bytes(tmp_path, small_acq):
    a = generate_subject("SYN0002", 3, 2, tmp_path / "a", small_acq)
    b = generate_subject("SYN0002", 3, 2, tmp_path / "b", small_acq)
    for key in a:
        assert a[key].read_bytes() == b[key].read_bytes(), key


def test_true_shifts_recorded_and_applied(synth_subject, small_acq):
    shifts = pd.read_csv(synth_subject["truth_shifts"], sep="\t")
    sa = shifts[shifts["view"] == "sa"]
    assert len(sa) == nib.load(synth_subject["sa"]).shape[2]
    assert set(shifts["view"]) == {"sa", "la_2ch", "la_3ch", "la_4ch"}
    rms = np.sqrt((sa["dx_mm"] ** 2 + sa["dy_mm"] ** 2).mean())
    assert 0.5 < rms < 3 * small_acq.sax_shift_rms_mm
    world = sa[["x_mm", "y_mm", "z_mm"]].to_numpy()
    assert np.allclose(np.linalg.norm(world, axis=1), np.hypot(sa["dx_mm"], sa["dy_mm"]))


@pytest.mark.parametrize("seed", range(12))
def test_population_ranges(seed):
    p = H.sample_params(np.random.default_rng(seed))
    model = H.HeartModel(p)
    ed, es = model.volumes_ml(0), model.volumes_ml(p.es_frame)
    assert 100 <= ed["LVC"] <= 221
    assert 6 <= p.wall_mm <= 12
    ef = 100 * (1 - es["LVC"] / ed["LVC"])
    assert ef == pytest.approx(p.lv_ef, abs=1e-6)
    assert 25 <= ef <= 70
    assert ed["LVM"] == pytest.approx(es["LVM"])           # myocardium is incompressible
    assert 0.5 * ed["LVC"] < ed["RVC"] < 1.6 * ed["LVC"]
    assert 0 < es["RVC"] < ed["RVC"]


def test_rv_volume_matches_fine_voxelisation():
    """The RV quadrature agrees with brute-force counting of the analytic indicator."""
    model = H.HeartModel(H.sample_params(np.random.default_rng(4)))
    lo, hi = model.bounds_local()
    h = 0.6
    axes = [np.arange(l, u, h) for l, u in zip(lo, hi)]
    total = 0
    for u in axes[0]:
        grid = np.stack(np.meshgrid([u], axes[1], axes[2], indexing="ij"), -1).reshape(-1, 3)
        total += (model.tissue_local(grid, 0) == 3).sum()
    assert total * h**3 / 1000 == pytest.approx(model.volumes_ml(0)["RVC"], rel=0.01)


def test_bounds_hold_every_tissue():
    model = H.HeartModel(H.sample_params(np.random.default_rng(9)))
    lo, hi = model.bounds_local()
    q = np.random.default_rng(1).uniform(lo - 50, hi + 50, size=(200_000, 3))
    outside = np.any((q < lo) | (q > hi), axis=1)
    for frame in (0, model.p.es_frame):
        assert not model.tissue_local(q[outside], frame).any()


def test_sheet_splits():
    sheet = make_sheet(10, 1, {"train": 0.6, "val": 0.2, "test": 0.2})
    assert sheet["split"].value_counts().to_dict() == {"train": 6, "val": 2, "test": 2}
    assert make_sheet(10, 1, {"train": 0.6, "val": 0.2, "test": 0.2}).equals(sheet)
    tiny = make_sheet(3, 0, {"train": 0.8, "val": 0.1, "test": 0.1})
    assert sorted(tiny["split"]) == ["test", "train", "val"]
