import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from cinerecon.geometry import resample_labels_to_plane
from cinerecon.metrics import dice
from cinerecon.synth import heart as H
from cinerecon.synth import scanner as S
from cinerecon.synth.cohort import generate_subject, make_sheet
from cinerecon.synth.scanner import AcquisitionConfig
from conftest import SMALL


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
    normal = nib.load(synth_subject["sa"]).affine[:3, 2] / 10.0
    assert np.allclose(world @ normal, sa["dz_mm"])  # the through-plane part of the heart's displacement
    assert sa["dz_mm"].abs().max() > 0 and 0 < sa["rotation_deg"].max() < 4 * small_acq.rotation_rms_deg


def test_smooth_phantom_moves_slices_in_plane_only(tmp_path):
    acq = AcquisitionConfig.from_dict({"phantom": "smooth", **{k: list(v) for k, v in SMALL.items() if k != "n_frames"},
                                       "n_frames": 10})
    assert acq.base_tilt_deg_range == (0.0, 0.0) and acq.trabeculation == 0 and acq.banding_depth == 0
    shifts = pd.read_csv(generate_subject("SYN0004", 3, 4, tmp_path, acq)["truth_shifts"], sep="\t")
    assert (shifts["dz_mm"] == 0).all() and (shifts["rotation_deg"] == 0).all()
    world = shifts[["x_mm", "y_mm", "z_mm"]].to_numpy()
    assert np.allclose(np.linalg.norm(world, axis=1), np.hypot(shifts["dx_mm"], shifts["dy_mm"]))
    with pytest.raises(ValueError, match="realistic or smooth"):
        AcquisitionConfig.from_dict({"phantom": "kind"})


def test_breath_hold_pose_moves_the_heart_rigidly():
    """A world point of a slice maps to the unmoved heart by R^T (x - d - c) + c: the pivot
    moves by d alone, and distances are kept."""
    plane = S.Plane("sa", np.diag([2.0, 2.0, 10.0, 1.0]), (4, 4), 3, 8.0, np.array([[1.0, 2.0]] * 3))
    plane.breath_hold(np.random.default_rng(0), 3.0, 5.0, pivot=[10.0, -5.0, 20.0])
    d = S.heart_displacement(plane, 1)
    assert np.allclose(d, [1.0, 2.0, plane.through_mm[1]])
    assert np.allclose(S.heart_points(plane, 1, plane.pivot + d), plane.pivot)
    a, b = np.array([0.0, 0, 0]), np.array([30.0, 40, 0])
    ha, hb = S.heart_points(plane, 1, np.stack([a, b]))
    assert np.linalg.norm(ha - hb) == pytest.approx(50.0)
    assert 0 < plane.rotation_deg(1) < 20


def test_axis_shift_is_the_in_plane_move_of_the_long_axis():
    plane = S.Plane("sa", np.diag([2.0, 2.0, 10.0, 1.0]), (4, 4), 3, 8.0, np.array([[1.0, 2.0]] * 3))
    axis = np.array([0.0, 0.6, 0.8])     # tilted: through-plane motion moves the crossing in-plane
    assert np.allclose(S.axis_shift(plane, 1, [0, 0, 0], axis), [1.0, 2.0])   # in-plane shift alone
    plane.through_mm = np.array([0.0, 4.0, 0.0])
    assert np.allclose(S.axis_shift(plane, 1, [0, 0, 0], axis), [1.0, 2.0 - 4.0 * 0.6 / 0.8])
    plane.through_mm = np.zeros(3)
    plane.rotations = np.stack([np.eye(3), S._rotation_matrix([0.0, 0.1, 0.0]), np.eye(3)])
    plane.pivot = np.zeros(3)
    # slice 1 lies 10 mm from the pivot: a 0.1 rad turn about y swings the vertical axis by ~1 mm in x
    vertical = S.axis_shift(plane, 1, [0, 0, 0], [0, 0, 1.0])
    assert vertical == pytest.approx([1.0 + 10 * np.tan(0.1), 2.0])


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


REALISTIC = AcquisitionConfig().anatomy()


def voxel_volumes_ml(model, frame, h=0.6, muscles=True):
    """LVC, LVM, RVC volumes (mL) by brute-force counting labels on an h mm grid."""
    lo, hi = model.bounds_local()
    axes = [np.arange(l, u, h) for l, u in zip(lo, hi)]
    counts = np.zeros(6)
    for u in axes[0]:
        grid = np.stack(np.meshgrid([u], axes[1], axes[2], indexing="ij"), -1).reshape(-1, 3)
        counts += np.bincount(H.tissue_to_label(model.tissue_local(grid, frame, muscles)), minlength=6)
    return dict(zip(("LVC", "LVM", "RVC"), counts[1:4] * h**3 / 1000))


def test_rv_volume_matches_fine_voxelisation():
    """The RV quadrature agrees with brute-force counting of the analytic indicator."""
    model = H.HeartModel(H.sample_params(np.random.default_rng(4)))
    assert voxel_volumes_ml(model, 0)["RVC"] == pytest.approx(model.volumes_ml(0)["RVC"], rel=0.01)


@pytest.mark.parametrize("seed", [4, 7])
def test_detailed_heart_volumes_stay_exact(seed):
    """Tilted mitral plane, superellipsoid apex, uneven wall, tricuspid offset, muscles and
    trabeculae: the closed-form LV volumes and the RV quadrature still match voxel counts."""
    p = H.sample_params(np.random.default_rng(seed), detail=REALISTIC)
    assert p.base_tilt_deg >= 8 and p.apex_power != 2 and p.papillary_radius_mm > 0
    model = H.HeartModel(p)
    for frame in (0, p.es_frame):
        counted, exact = voxel_volumes_ml(model, frame), model.volumes_ml(frame)
        for key in exact:
            assert counted[key] == pytest.approx(exact[key], rel=0.01), (frame, key)
    ed, es = model.volumes_ml(0), model.volumes_ml(p.es_frame)
    assert 100 * (1 - es["RVC"] / ed["RVC"]) == pytest.approx(p.rv_ef, abs=0.2)  # RV contraction solved for rv_ef
    assert ed["LVM"] == pytest.approx(es["LVM"])


def test_shape_factor_is_the_superellipsoid_integral():
    assert H.shape_factor(2.0) == 2 / 3 * np.pi
    z = np.linspace(0, 1, 200_001)
    for p in (1.7, 2.0, 2.6):
        integral = np.trapezoid((1 - z**p) ** (2 / p), z)
        assert np.pi * integral == pytest.approx(H.shape_factor(p), rel=1e-5)


def test_muscles_and_trabeculae_are_cavity_labels_with_their_own_tissue():
    model = H.HeartModel(H.sample_params(np.random.default_rng(7), detail=REALISTIC))
    lo, hi = model.bounds_local()
    q = np.random.default_rng(0).uniform(lo, hi, size=(400_000, 3))
    with_muscles, without = model.tissue_local(q, 0), model.tissue_local(q, 0, muscles=False)
    for tissue, label in ((H.PAPILLARY, 1), (H.LV_TRABECULAE, 1), (H.RV_TRABECULAE, 3)):
        assert (with_muscles == tissue).sum() > 100, tissue
        assert (without[with_muscles == tissue] == label).all()
    assert np.array_equal(H.tissue_to_label(with_muscles), H.tissue_to_label(without))


def test_mitral_plane_rises_towards_the_aortic_valve():
    """The LV cavity reaches `lift` above the base centre on the aortic side and starts
    `lift` below it on the opposite side (lift = tan(tilt) x distance from the axis)."""
    p = H.sample_params(np.random.default_rng(7), detail=REALISTIC)
    model = H.HeartModel(p)
    fs = model.frames[0]
    side = 0.6 * fs.r * model.aorta_dir_uv
    lift = np.tan(np.deg2rad(p.base_tilt_deg)) * 0.6 * fs.r
    points = np.array([[*side, -0.9 * lift], [*side, -1.1 * lift],
                       [*(-side), 0.9 * lift], [*(-side), 1.1 * lift]])
    cavity = H.tissue_to_label(model.tissue_local(points, 0)) == 1
    assert cavity.tolist() == [True, False, False, True]



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


def test_annotation_displaces_contours_by_about_sd():
    """A disc of radius 30 px (1 mm pixels): the annotated boundary lies a smooth RMS ~sd
    from the true circle, with no bias; sd 0 leaves the labels as they were."""
    from cinerecon.synth.annotation import annotate

    yy, xx = np.mgrid[:100, :100] - 49.5
    radius = np.hypot(xx, yy)
    disc = (radius <= 30).astype(np.uint8)
    assert annotate(disc, 1.0, 0.0, np.random.default_rng(0)) is disc
    rng = np.random.default_rng(1)
    offsets, means = [], []
    for _ in range(20):
        drawn = annotate(disc, 1.0, 2.0, rng) == 1
        edge = drawn & ~ndimage.binary_erosion(drawn)
        offsets.append(radius[edge] - 30)
        means.append(np.sqrt(drawn.sum() / np.pi) - 30)
    rms = np.sqrt(np.mean(np.concatenate(offsets) ** 2))
    assert 1.4 < rms < 2.8 and abs(np.mean(means)) < 0.5
    # the same draws give the same contours; structures keep their values
    again = annotate(disc, 1.0, 2.0, np.random.default_rng(5))
    assert np.array_equal(again, annotate(disc, 1.0, 2.0, np.random.default_rng(5)))
    assert set(np.unique(again)) == {0, 1}


def test_lax_protocol_counts_muscles_as_myocardium():
    tissue = np.array([H.PAPILLARY, H.LV_TRABECULAE, H.RV_TRABECULAE, 1, 2, 3])
    assert H.tissue_to_label(tissue).tolist() == [1, 1, 3, 1, 2, 3]
    assert H.tissue_to_label(tissue, H.MUSCLES_AS_MYOCARDIUM).tolist() == [2, 2, 3, 1, 2, 3]
