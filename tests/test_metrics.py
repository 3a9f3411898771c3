"""Tests for cinerecon.metrics: hand-computed values, anisotropy, edge cases, independent checks."""

import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from cinerecon.labels import SAX_LABELS
from cinerecon.metrics import (
    METRIC_NAMES,
    asd,
    assd,
    dice,
    hausdorff,
    hd95,
    per_label_metrics,
    psnr,
    spacing_from_affine,
    ssim,
    surface,
    surface_distances,
    surface_metrics,
    voe,
)

DISTANCES = (hausdorff, hd95, asd, assd)


# --- helpers -------------------------------------------------------------------------------


def bars():
    """Two horizontal bars in 2D: pred row 2 cols 2..8 (7 voxels), ref row 5 cols 2..5 (4 voxels)."""
    pred = np.zeros((12, 12), bool)
    ref = np.zeros((12, 12), bool)
    pred[2, 2:9] = True
    ref[5, 2:6] = True
    return pred, ref


def brute_surface(mask):
    """Independent surface: mask voxels with a face neighbour outside the mask (outside the array counts)."""
    padded = np.pad(mask, 1)
    inner = tuple(slice(1, -1) for _ in range(mask.ndim))
    outside_neighbour = np.zeros_like(mask)
    for axis in range(mask.ndim):
        for step in (-1, 1):
            outside_neighbour |= ~np.roll(padded, step, axis=axis)[inner]
    return mask & outside_neighbour


def brute_metrics(pred, ref, spacing):
    """All-pairs surface distances with scipy.spatial.cdist, no distance transform, no cropping."""
    sp = np.asarray(spacing, float)
    p = np.argwhere(brute_surface(pred)) * sp
    r = np.argwhere(brute_surface(ref)) * sp
    d = cdist(p, r)
    d_pr, d_rp = d.min(axis=1), d.min(axis=0)
    pooled = np.concatenate([d_pr, d_rp])
    return {"hd": pooled.max(), "hd95": np.percentile(pooled, 95), "asd": d_pr.mean(), "assd": pooled.mean()}


def random_blob(shape, seed, threshold=0.55, sigma=2.0):
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random(shape), sigma)
    return field > np.quantile(field, threshold)


def ball(shape, center, radius, spacing=(1.0, 1.0, 1.0)):
    grids = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    r2 = sum((g - c) ** 2 for g, c in zip(grids, center))
    return r2 <= radius**2


# --- overlap -------------------------------------------------------------------------------


def test_square_vs_shifted_square_dice_voe():
    pred = np.zeros((10, 10), bool)
    ref = np.zeros((10, 10), bool)
    pred[2:6, 2:6] = True  # 16 voxels
    ref[3:7, 2:6] = True  # 16 voxels, 12 shared
    assert dice(pred, ref) == pytest.approx(2 * 12 / 32)
    assert voe(pred, ref) == pytest.approx(1 - 12 / 20)
    assert dice(pred, pred) == 1.0 and voe(pred, pred) == 0.0


def test_overlap_3d_and_non_bool_input():
    pred = np.zeros((4, 4, 4), np.uint8)
    ref = np.zeros((4, 4, 4), np.uint8)
    pred[:2] = 1  # 32 voxels
    ref[1:3] = 7  # 32 voxels, 16 shared; any non-zero is foreground
    assert dice(pred, ref) == pytest.approx(0.5)
    assert voe(pred, ref) == pytest.approx(1 - 16 / 48)


def test_disjoint_masks():
    pred, ref = bars()
    assert dice(pred, ref) == 0.0
    assert voe(pred, ref) == 1.0


# --- surface distances: hand-computed -------------------------------------------------------


def test_bars_hand_computed_isotropic():
    pred, ref = bars()
    d_pr = np.array([3, 3, 3, 3, math.sqrt(10), math.sqrt(13), math.sqrt(18)])
    d_rp = np.array([3.0, 3, 3, 3])
    got_pr, got_rp = surface_distances(pred, ref, (1, 1))
    np.testing.assert_allclose(np.sort(got_pr), d_pr)
    np.testing.assert_allclose(np.sort(got_rp), d_rp)
    assert hausdorff(pred, ref, (1, 1)) == pytest.approx(math.sqrt(18))
    assert asd(pred, ref, (1, 1)) == pytest.approx(d_pr.mean())
    assert asd(ref, pred, (1, 1)) == pytest.approx(3.0)
    assert assd(pred, ref, (1, 1)) == pytest.approx((d_pr.sum() + d_rp.sum()) / 11)


def test_hd95_is_percentile_of_pooled_distances():
    """11 pooled values, sorted [3]*8 + [√10, √13, √18]; numpy's linear p95 sits at index 9.5."""
    pred, ref = bars()
    expected = math.sqrt(13) + 0.5 * (math.sqrt(18) - math.sqrt(13))
    assert hd95(pred, ref, (1, 1)) == pytest.approx(expected)
    # The other common definition (max of the two directed p95s) gives a different value here.
    max_directed = math.sqrt(13) + 0.7 * (math.sqrt(18) - math.sqrt(13))
    assert hd95(pred, ref, (1, 1)) != pytest.approx(max_directed)
    # Symmetric metrics do not depend on argument order; ASD does.
    for f in (hausdorff, hd95, assd):
        assert f(pred, ref, (1, 1)) == pytest.approx(f(ref, pred, (1, 1)))
    assert asd(pred, ref, (1, 1)) != pytest.approx(asd(ref, pred, (1, 1)))


def test_bars_anisotropic_spacing():
    pred, ref = bars()
    # Rows (axis 0) 2 mm apart: the 3-row gap is 6 mm; columns 1 mm.
    assert hausdorff(pred, ref, (2.0, 1.0)) == pytest.approx(math.sqrt(36 + 9))
    assert asd(ref, pred, (2.0, 1.0)) == pytest.approx(6.0)


@pytest.mark.parametrize("axis, expected_mm", [(0, 1.8), (1, 1.8), (2, 10.0)])
def test_one_voxel_shift_anisotropic(axis, expected_mm):
    spacing = (1.8, 1.8, 10.0)
    pred = np.zeros((12, 12, 8), bool)
    pred[3:8, 3:8, 2:5] = True
    ref = np.roll(pred, 1, axis=axis)
    assert hausdorff(pred, ref, spacing) == pytest.approx(expected_mm)
    assert hd95(pred, ref, spacing) <= expected_mm + 1e-9


def test_identical_masks_have_zero_distances():
    mask = random_blob((20, 20, 6), seed=1)
    for f in DISTANCES:
        assert f(mask, mask, (1.8, 1.8, 10.0)) == 0.0


def test_concentric_spheres_assd_is_radius_difference():
    # Surface voxels lie up to one voxel inside the continuous sphere, so allow a fraction of a voxel.
    shape, center = (48, 48, 48), (23.7, 24.2, 23.9)
    inner, outer = ball(shape, center, 10.0), ball(shape, center, 14.0)
    assert assd(inner, outer, (1, 1, 1)) == pytest.approx(4.0, abs=0.3)
    assert asd(inner, outer, (1, 1, 1)) == pytest.approx(4.0, abs=0.3)
    assert hausdorff(inner, outer, (1, 1, 1)) == pytest.approx(4.0, abs=1.0)


def test_concentric_spheres_anisotropic_grid():
    """Spheres defined in mm on a (1, 1, 2.5) mm grid: distances are in mm, not voxels.

    Discretisation error is a fraction of the largest voxel size, hence 0.6 mm; ignoring the
    spacing (voxel units) gives about 3.6 and fails by far.
    """
    spacing = (1.0, 1.0, 2.5)
    shape = (56, 56, 24)
    center = (27.6, 28.3, 29.4)
    inner, outer = ball(shape, center, 12.0, spacing), ball(shape, center, 18.0, spacing)
    assert assd(inner, outer, spacing) == pytest.approx(6.0, abs=0.6)
    assert assd(inner, outer, (1, 1, 1)) < 4.5


# --- surface distances: independent implementations ------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (1.8, 1.8, 10.0), (0.7, 1.3, 2.9)])
def test_agrees_with_brute_force(seed, spacing):
    pred = random_blob((18, 16, 7), seed)
    ref = random_blob((18, 16, 7), seed + 100)
    expected = brute_metrics(pred, ref, spacing)
    got = surface_metrics(pred, ref, spacing)
    for key in expected:
        assert got[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-9), key


def test_surface_matches_brute_force_definition():
    for seed in range(3):
        mask = random_blob((15, 14, 6), seed)
        np.testing.assert_array_equal(surface(mask), brute_surface(mask))


def test_cropping_does_not_change_results():
    """Small masks in a big array, near the centre and touching the array border."""
    spacing = (1.8, 1.8, 10.0)
    pred_small = random_blob((14, 12, 5), 7)
    ref_small = random_blob((14, 12, 5), 8)
    expected = brute_metrics(pred_small, ref_small, spacing)
    for offset in [(30, 41, 6), (0, 0, 0), (86, 88, 7)]:
        pred = np.zeros((100, 100, 12), bool)
        ref = np.zeros((100, 100, 12), bool)
        box = tuple(slice(o, o + n) for o, n in zip(offset, pred_small.shape))
        pred[box], ref[box] = pred_small, ref_small
        got = surface_metrics(pred, ref, spacing)
        if offset == (0, 0, 0) or offset == (86, 88, 7):
            # Touching the array edge: voxels on the edge are surface (outside is background).
            expected_edge = brute_metrics(pred, ref, spacing)
            for key in got:
                assert got[key] == pytest.approx(expected_edge[key]), (offset, key)
        else:
            for key in got:
                assert got[key] == pytest.approx(expected[key]), (offset, key)


def test_hausdorff_agrees_with_skimage():
    skm = pytest.importorskip("skimage.metrics")
    seg = pytest.importorskip("skimage.segmentation")
    for seed in range(3):
        pred = np.pad(random_blob((30, 28), seed, sigma=3.0), 2)
        ref = np.pad(random_blob((30, 28), seed + 50, sigma=3.0), 2)
        b_pred = seg.find_boundaries(pred, mode="inner", connectivity=1) & pred
        b_ref = seg.find_boundaries(ref, mode="inner", connectivity=1) & ref
        assert hausdorff(pred, ref, (1, 1)) == pytest.approx(skm.hausdorff_distance(b_pred, b_ref))


# --- edge cases (table in cinerecon/metrics/__init__.py) ---------------------------------------


def test_both_empty():
    empty = np.zeros((5, 6, 3), bool)
    assert dice(empty, empty) == 1.0
    assert voe(empty, empty) == 0.0
    for f in DISTANCES:
        assert f(empty, empty, (1.8, 1.8, 10)) == 0.0


@pytest.mark.parametrize("empty_side", ["pred", "ref"])
def test_exactly_one_empty(empty_side):
    full = np.zeros((5, 6, 3), bool)
    full[1:3, 2:4, 1] = True
    empty = np.zeros_like(full)
    pred, ref = (empty, full) if empty_side == "pred" else (full, empty)
    assert dice(pred, ref) == 0.0
    assert voe(pred, ref) == 1.0
    for f in DISTANCES:
        assert math.isnan(f(pred, ref, (1.8, 1.8, 10)))
    d_pr, d_rp = surface_distances(pred, ref, (1.8, 1.8, 10))
    assert d_pr.size == 0 and d_rp.size == 0


def test_single_voxel_masks():
    pred = np.zeros((5, 5, 5), bool)
    ref = np.zeros((5, 5, 5), bool)
    pred[1, 1, 1] = True
    ref[3, 1, 2] = True
    expected = math.hypot(2 * 1.8, 10.0)
    for f in DISTANCES:
        assert f(pred, ref, (1.8, 1.8, 10.0)) == pytest.approx(expected)


def test_input_validation():
    a = np.zeros((4, 4), bool)
    with pytest.raises(ValueError, match="shapes differ"):
        dice(a, np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="shapes differ"):
        hausdorff(a, np.zeros((4, 5), bool), (1, 1))
    with pytest.raises(ValueError, match="spacing has 3 values"):
        hausdorff(a, a, (1, 1, 1))
    with pytest.raises(ValueError, match="positive"):
        hd95(a, a, (1, 0))
    assert hausdorff(a, a, 2.0) == 0.0  # a scalar spacing is isotropic


# --- per-label ---------------------------------------------------------------------------------


def test_per_label_metrics_keys_and_values():
    spacing = (1.8, 1.8, 10.0)
    ref = np.zeros((20, 20, 6), np.uint8)
    ref[4:14, 4:14, 1:5] = 2
    ref[6:12, 6:12, 1:5] = 1
    ref[14:18, 4:14, 1:5] = 3
    pred = ref.copy()
    pred[pred == 3] = 0  # RV missing from the prediction
    pred[6:12, 6:12, 5] = 1  # LV one slice too long
    row = per_label_metrics(pred, ref, SAX_LABELS, spacing)
    assert list(row) == [f"{m}_{name}" for name in SAX_LABELS.values() for m in METRIC_NAMES]
    assert row["dice_LVM"] == 1.0 and row["hd_LVM"] == 0.0
    assert row["dice_LVC"] == pytest.approx(dice(pred == 1, ref == 1))
    assert row["hd_LVC"] == pytest.approx(10.0)
    assert row["hd95_LVC"] == pytest.approx(hd95(pred == 1, ref == 1, spacing))
    assert row["dice_RVC"] == 0.0 and row["voe_RVC"] == 1.0
    assert all(math.isnan(row[f"{m}_RVC"]) for m in ("hd", "hd95", "asd", "assd"))


def test_per_label_metrics_structure_absent_in_both():
    labels = np.zeros((6, 6, 2), np.uint8)
    labels[1:4, 1:4, :] = 1
    row = per_label_metrics(labels, labels, {1: "LVC", 4: "LA"}, (1, 1, 1))
    assert row["dice_LA"] == 1.0 and row["voe_LA"] == 0.0 and row["assd_LA"] == 0.0


# --- spacing -----------------------------------------------------------------------------------


def test_spacing_from_affine_with_rotation():
    theta = 0.7
    rot = np.array(
        [[math.cos(theta), -math.sin(theta), 0], [math.sin(theta), math.cos(theta), 0], [0, 0, 1]]
    ) @ np.array([[1, 0, 0], [0, math.cos(0.3), -math.sin(0.3)], [0, math.sin(0.3), math.cos(0.3)]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([1.8, 1.8, 10.0])
    affine[:3, 3] = [-50.0, 20.0, 7.0]
    np.testing.assert_allclose(spacing_from_affine(affine), (1.8, 1.8, 10.0))
    with pytest.raises(ValueError):
        spacing_from_affine(np.eye(3))


# --- image metrics -----------------------------------------------------------------------------


def test_psnr_known_value_and_identical():
    ref = np.zeros((16, 16))
    pred = np.full((16, 16), 0.1)
    assert psnr(pred, ref, data_range=2.0) == pytest.approx(10 * math.log10(4 / 0.01))
    assert psnr(ref, ref, data_range=2.0) == math.inf


def test_psnr_matches_skimage_on_stack():
    skm = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(0)
    ref = rng.uniform(-1, 1, (24, 20, 4, 3))
    pred = np.clip(ref + rng.normal(0, 0.05, ref.shape), -1, 1)
    assert psnr(pred, ref, 2.0) == pytest.approx(skm.peak_signal_noise_ratio(ref, pred, data_range=2.0))


def test_ssim_2d_and_stack_is_mean_of_slices():
    skm = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(1)
    ref = ndimage.gaussian_filter(rng.uniform(-1, 1, (32, 28, 5)), (2, 2, 0))
    pred = ref + rng.normal(0, 0.05, ref.shape)
    assert ssim(ref, ref, 2.0) == pytest.approx(1.0)
    per_slice = [skm.structural_similarity(ref[..., k], pred[..., k], data_range=2.0) for k in range(5)]
    assert ssim(pred, ref, 2.0) == pytest.approx(np.mean(per_slice))
    assert ssim(pred[..., 0], ref[..., 0], 2.0) == pytest.approx(per_slice[0])
    # (X, Y, Z, T): every (z, t) slice counts once.
    stack4d = np.stack([pred, ref], axis=-1)
    ref4d = np.stack([ref, ref], axis=-1)
    assert ssim(stack4d, ref4d, 2.0) == pytest.approx((np.sum(per_slice) + 5) / 10)
    assert ssim(pred, ref, 2.0) < 1.0


def test_image_metric_validation():
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(np.zeros((8, 8)), np.zeros((8, 9)), 1.0)
    with pytest.raises(ValueError, match="data_range"):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)), 0.0)
    with pytest.raises(ValueError, match="2D"):
        psnr(np.zeros(8), np.zeros(8), 1.0)
