"""Tests for cinerecon.phenotypes: analytic volumes, exact SV/EF/LVM arithmetic, ES detection."""

import math
import warnings

import numpy as np
import pytest

from cinerecon.labels import LVC, LVM, MYOCARDIAL_DENSITY_G_PER_ML, RVC
from cinerecon.phenotypes import (
    CINE_COLUMNS,
    PHENOTYPE_COLUMNS,
    PHENOTYPE_UNITS,
    find_es_frame,
    label_volumes_ml,
    phenotypes,
    phenotypes_from_cine,
    volume_curve_ml,
    voxel_volume_ml,
)

# LV-sized ellipsoids (mm): blood pool and the outer surface of a ~7 mm thick myocardial shell.
INNER = (22.0, 20.0, 45.0)
OUTER = (29.0, 27.0, 52.0)
V_INNER_ML = 4 / 3 * math.pi * np.prod(INNER) / 1000
V_SHELL_ML = 4 / 3 * math.pi * np.prod(OUTER) / 1000 - V_INNER_ML

# Voxelisation tolerances (relative). At 1 mm the error is < 0.1%; on the UK Biobank SAX grid
# (1.8 x 1.8 x 10 mm), with the long axis along the slice normal, it stays < 2% over random
# sub-voxel centres and in-plane rotations, so 2.5% is used. (A long axis tilted away from the
# slice normal by ~0.3 rad can reach ~3%: 10 mm slices sample a tilted apex/base coarsely.)
TOL_1MM = 0.005
TOL_SAX = 0.025


def rotation(a, b, c):
    """Rotation matrix from three angles (rad) about z, y and x."""
    cz, sz, cy, sy, cx, sx = math.cos(a), math.sin(a), math.cos(b), math.sin(b), math.cos(c), math.sin(c)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return rz @ ry @ rx


def centred_affine(spacing, shape, center, rot=np.eye(3)):
    """Affine whose voxel grid (rotated by ``rot``) is centred on the world point ``center``."""
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(spacing)
    affine[:3, 3] = np.asarray(center) - affine[:3, :3] @ ((np.asarray(shape) - 1) / 2)
    return affine


def render_heart(shape, affine, center, world_rot=np.eye(3)):
    """Labels at voxel centres: 1 inside the inner ellipsoid, 2 in the shell, axes rotated by ``world_rot``."""
    ijk = np.indices(shape).reshape(3, -1)
    xyz = affine[:3, :3] @ ijk + affine[:3, 3:4]
    local = world_rot.T @ (xyz - np.asarray(center)[:, None])

    def inside(axes):
        return ((local / np.asarray(axes)[:, None]) ** 2).sum(axis=0) <= 1

    labels = np.zeros(ijk.shape[1], np.uint8)
    labels[inside(OUTER)] = LVM
    labels[inside(INNER)] = LVC
    return labels.reshape(shape)


def assert_heart_volumes(labels, affine, tol):
    vols = label_volumes_ml(labels, affine)
    assert vols["LVC"] == pytest.approx(V_INNER_ML, rel=tol)
    assert vols["LVM"] == pytest.approx(V_SHELL_ML, rel=tol)
    assert vols["RVC"] == 0.0


# --- volumes against closed form -----------------------------------------------------------


def test_ellipsoid_volumes_1mm():
    shape = (70, 66, 116)
    center = (0.3, -0.4, 0.2)
    affine = centred_affine((1.0, 1.0, 1.0), shape, (0.0, 0.0, 0.0))
    assert_heart_volumes(render_heart(shape, affine, center), affine, TOL_1MM)


@pytest.mark.parametrize("offset", [(0.0, 0.0, 0.0), (0.7, -0.3, 4.0), (-0.9, 0.5, -2.5)])
def test_ellipsoid_volumes_ukbb_sax_spacing(offset):
    spacing, shape = (1.8, 1.8, 10.0), (40, 38, 13)
    affine = centred_affine(spacing, shape, (0.0, 0.0, 0.0))
    assert_heart_volumes(render_heart(shape, affine, offset), affine, TOL_SAX)


def test_ellipsoid_in_rotated_anisotropic_grid():
    """A tilted SAX grid (world-oblique, as in real scans) around a world-oriented heart."""
    spacing, shape = (1.8, 1.8, 10.0), (64, 64, 13)
    rot = rotation(0.6, -0.4, 0.9)
    grid_center = np.array([12.0, -30.0, 55.0])
    affine = centred_affine(spacing, shape, grid_center, rot)
    # The heart's long axis is the grid's z axis, as a SAX stack is planned; its in-plane axes
    # are turned by 0.5 rad and its centre sits off the voxel grid.
    heart_center = grid_center + rot @ np.array([0.7, -0.4, 3.0])
    heart_rot = rot @ rotation(0.5, 0.0, 0.0)
    assert_heart_volumes(render_heart(shape, affine, heart_center, heart_rot), affine, TOL_SAX)


def test_rotation_and_translation_do_not_change_volume():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(9, 8, 5)).astype(np.uint8)
    plain = np.diag([1.8, 1.8, 10.0, 1.0])
    rotated = plain.copy()
    rotated[:3, :3] = rotation(0.8, 0.3, -1.1) @ plain[:3, :3]
    rotated[:3, 3] = [-100.0, 42.0, 7.5]
    flipped = rotated @ np.diag([-1.0, 1.0, 1.0, 1.0])  # a left-handed (LPS-like) axis order
    expected = label_volumes_ml(labels, plain)
    for affine in (rotated, flipped):
        got = label_volumes_ml(labels, affine)
        for name in expected:
            assert got[name] == pytest.approx(expected[name], rel=1e-12)
    # The UK Biobank pipeline's count x dx x dy x dz, for comparison.
    assert expected["LVM"] == pytest.approx(np.count_nonzero(labels == LVM) * 1.8 * 1.8 * 10.0 / 1000)


def test_voxel_volume_and_validation():
    assert voxel_volume_ml(np.diag([2.0, 2.0, 5.0, 1.0])) == pytest.approx(0.02)
    with pytest.raises(ValueError, match="singular"):
        voxel_volume_ml(np.diag([2.0, 0.0, 5.0, 1.0]))
    with pytest.raises(ValueError, match="4x4"):
        voxel_volume_ml(np.eye(3))
    with pytest.raises(ValueError, match="3D"):
        label_volumes_ml(np.zeros((4, 4, 4, 2), np.uint8), np.eye(4))


# --- exact arithmetic ----------------------------------------------------------------------


def labels_with_counts(shape, counts):
    """A label volume with exactly ``counts[label]`` voxels of each label (positions irrelevant)."""
    flat = np.zeros(int(np.prod(shape)), np.uint8)
    start = 0
    for label, n in counts.items():
        flat[start : start + n] = label
        start += n
    return np.random.default_rng(1).permutation(flat).reshape(shape)


AFFINE_20MM3 = np.diag([2.0, 2.0, 5.0, 1.0])  # 20 mm^3 = 0.02 mL per voxel


def test_sv_ef_lvm_exact():
    ed = labels_with_counts((20, 20, 10), {LVC: 1000, LVM: 500, RVC: 1200})
    es = labels_with_counts((20, 20, 10), {LVC: 400, LVM: 600, RVC: 700})
    row = phenotypes(ed, es, AFFINE_20MM3)
    expected = {
        "LVEDV": 20.0,
        "LVESV": 8.0,
        "LVSV": 12.0,
        "LVEF": 60.0,
        "LVM": 10.0 * MYOCARDIAL_DENSITY_G_PER_ML,  # ED myocardium only, not ES
        "RVEDV": 24.0,
        "RVESV": 14.0,
        "RVSV": 10.0,
        "RVEF": 100.0 * 10.0 / 24.0,
    }
    assert tuple(row) == PHENOTYPE_COLUMNS
    for key, value in expected.items():
        assert row[key] == pytest.approx(value, rel=1e-12), key


def test_zero_edv_gives_nan_ef_without_warnings():
    ed = labels_with_counts((10, 10, 4), {LVC: 100, LVM: 50})  # no RV at all
    es = labels_with_counts((10, 10, 4), {LVC: 60, LVM: 50})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = phenotypes(ed, es, AFFINE_20MM3)
    assert row["RVEDV"] == 0.0 and row["RVSV"] == 0.0
    assert math.isnan(row["RVEF"])
    assert row["LVEF"] == pytest.approx(40.0)


def test_ed_es_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shapes differ"):
        phenotypes(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 2), np.uint8), np.eye(4))


def test_columns_and_units():
    assert PHENOTYPE_COLUMNS == ("LVEDV", "LVESV", "LVSV", "LVEF", "LVM", "RVEDV", "RVESV", "RVSV", "RVEF")
    assert set(PHENOTYPE_UNITS) == set(PHENOTYPE_COLUMNS)
    assert {PHENOTYPE_UNITS[c] for c in PHENOTYPE_COLUMNS} == {"mL", "g", "%"}
    assert PHENOTYPE_UNITS["LVM"] == "g" and PHENOTYPE_UNITS["RVEF"] == "%"
    assert CINE_COLUMNS == PHENOTYPE_COLUMNS + ("es_frame",)


# --- ES detection --------------------------------------------------------------------------


def test_find_es_frame():
    assert find_es_frame([120.0, 90.0, 50.0, 70.0]) == 2
    assert find_es_frame([5.0, 3.0, 3.0, 4.0]) == 1  # ties -> first minimum
    assert find_es_frame(np.array([5, 4, 2, 2, 3])) == 2
    assert find_es_frame([5.0, np.nan, 4.0]) == 2  # NaN frames are skipped
    with pytest.raises(ValueError):
        find_es_frame([])
    with pytest.raises(ValueError):
        find_es_frame([np.nan, np.nan])
    with pytest.raises(ValueError):
        find_es_frame(np.ones((2, 3)))


def test_phenotypes_from_cine_finds_known_minimum():
    """A 4D cine whose LV cavity shrinks to its smallest at frame 6 then refills."""
    shape, n_frames, es_true = (24, 24, 6), 12, 6
    lv_radius = [8.0, 7.5, 6.5, 5.5, 4.6, 3.8, 3.0, 3.8, 4.6, 5.5, 6.5, 7.5]
    ii, jj = np.indices(shape[:2])
    r = np.hypot(ii - 11.5, jj - 9.5)
    cine = np.zeros((*shape, n_frames), np.uint8)
    for t, rad in enumerate(lv_radius):
        frame = np.zeros(shape[:2], np.uint8)
        frame[(r > rad) & (r <= rad + 2.5)] = LVM
        frame[r <= rad] = LVC
        frame[(ii > 14) & (jj > 14 + t % 3)] = RVC
        cine[:, :, 1:5, t] = frame[:, :, None]
    affine = centred_affine((1.8, 1.8, 10.0), shape, (0.0, 0.0, 0.0), rotation(0.3, 0.2, 0.1))

    curve = volume_curve_ml(cine, affine, LVC)
    assert curve.shape == (n_frames,)
    assert int(np.argmin(curve)) == es_true
    assert curve[0] == pytest.approx(label_volumes_ml(cine[..., 0], affine)["LVC"])

    row = phenotypes_from_cine(cine, affine)
    assert tuple(row) == CINE_COLUMNS
    assert row["es_frame"] == es_true
    expected = phenotypes(cine[..., 0], cine[..., es_true], affine)
    for key in PHENOTYPE_COLUMNS:
        assert row[key] == pytest.approx(expected[key])
    assert 0 < row["LVEF"] < 100 and row["LVSV"] > 0


def test_cine_requires_4d():
    with pytest.raises(ValueError, match="X, Y, Z, T"):
        phenotypes_from_cine(np.zeros((4, 4, 3), np.uint8), np.eye(4))
