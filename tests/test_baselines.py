import numpy as np
import pytest

from cinerecon.baselines import BASELINES, reconstruct_image, reconstruct_labels
from cinerecon.baselines import grid
from cinerecon.baselines.methods import signed_distance
from cinerecon.geometry import apply_affine

PX, DZ = 1.8, 10.0


def ellipsoid_stack(semi=(30.0, 24.0, 45.0), wall=8.0, n=70, zs=np.arange(-40, 41, DZ)):
    """Discs (LVC) in rings (LVM) cut from nested ellipsoids at SAX slice positions."""
    x = (np.arange(n) - (n - 1) / 2) * PX
    X, Y = np.meshgrid(x, x, indexing="ij")
    stack = np.zeros((n, n, len(zs)), np.uint8)
    a, b, c = semi
    for k, z in enumerate(zs):
        outer = (X / (a + wall)) ** 2 + (Y / (b + wall)) ** 2 + (z / (c + wall)) ** 2 <= 1
        inner = (X / a) ** 2 + (Y / b) ** 2 + (z / c) ** 2 <= 1
        stack[..., k][outer] = 2
        stack[..., k][inner] = 1
    affine = np.diag([PX, PX, DZ, 1.0])
    affine[:3, 3] = [-(n - 1) / 2 * PX, -(n - 1) / 2 * PX, zs[0]]
    return stack, affine


@pytest.mark.parametrize("method", BASELINES)
def test_ellipsoid_volume_recovered(method):
    """The stack spans the ellipsoid's z-extent (with the half-slab end rule) exactly."""
    stack, affine = ellipsoid_stack()
    volume, fine = reconstruct_labels(stack, affine, 10, method)
    voxel_ml = abs(np.linalg.det(fine[:3, :3])) / 1000
    expected = 4 / 3 * np.pi * 30 * 24 * 45 / 1000
    tolerance = 0.02 if method == "nn" else 0.01
    assert (volume == 1).sum() * voxel_ml == pytest.approx(expected, rel=tolerance)


@pytest.mark.parametrize("method", BASELINES)
def test_acquired_slices_are_reproduced_exactly(method):
    stack, affine = ellipsoid_stack()
    k = 10
    volume, fine = reconstruct_labels(stack, affine, k, method)
    for j in range(stack.shape[2]):
        m = grid.acquired_index(j, k)
        assert np.array_equal(volume[:, :, m], stack[:, :, j])
        assert np.allclose(apply_affine(fine, [5, 7, m]), apply_affine(affine, [5, 7, j]))


def test_grid_end_slabs_extend_half_a_spacing():
    positions = grid.fine_positions(4, 10)
    assert positions[0] == pytest.approx(-0.5) and positions[-1] == pytest.approx(3.5)
    assert len(positions) == 3 * 10 + 1 + 10


@pytest.mark.parametrize("method", ["sdf", "cpd"])
def test_shape_methods_interpolate_radius(method):
    """Between a disc of radius 10 and one of 20 mm, the middle section has radius ~15."""
    n = 60
    x = (np.arange(n) - (n - 1) / 2) * 1.0
    X, Y = np.meshgrid(x, x, indexing="ij")
    stack = np.zeros((n, n, 2), np.uint8)
    stack[..., 0][X**2 + Y**2 <= 10**2] = 1
    stack[..., 1][X**2 + Y**2 <= 20**2] = 1
    volume, _ = reconstruct_labels(stack, np.diag([1.0, 1.0, 10.0, 1.0]), 10, method)
    middle = volume[:, :, grid.acquired_index(0, 10) + 5]
    assert np.sqrt((middle == 1).sum() / np.pi) == pytest.approx(15.0, abs=0.8)


def test_sdf_structure_vanishing_and_moving():
    n = 60
    stack = np.zeros((n, n, 3), np.uint8)
    stack[10:20, 10:20, 0] = 3           # RV only in slice 0: must shrink away towards slice 1
    stack[10:20, 10:20, 1] = 0
    stack[5:15, 5:15, 1] = 1             # LV jumps without overlap between slices 1 and 2
    stack[40:50, 40:50, 2] = 1
    volume, _ = reconstruct_labels(stack, np.diag([1.0, 1.0, 10.0, 1.0]), 10, "sdf")
    rv = [(volume[:, :, grid.acquired_index(0, 10) + i] == 3).sum() for i in range(10)]
    assert rv[0] == 100 and all(np.diff(rv) <= 0) and rv[-1] < 10
    lv_mid = volume[:, :, grid.acquired_index(1, 10) + 5] == 1
    assert 60 <= lv_mid.sum() <= 140   # the section travels instead of vanishing
    centre = np.argwhere(lv_mid).mean(0)
    assert np.allclose(centre, [27, 27], atol=2)


def test_signed_distance_all_foreground_and_anisotropic():
    full = np.ones((5, 7), bool)
    d = signed_distance(full, (1.0, 1.0))
    assert (d < 0).all() and d[2, 3] == pytest.approx(-3.0)  # the border counts as outside
    mask = np.zeros((9, 9), bool)
    mask[4, 4] = True
    d = signed_distance(mask, (2.0, 1.0))
    assert d[4, 6] == pytest.approx(2.0) and d[6, 4] == pytest.approx(4.0)


def test_cpd_handles_appearing_structure():
    n = 50
    stack = np.zeros((n, n, 2), np.uint8)
    yy, xx = np.mgrid[:n, :n]
    stack[..., 1][(yy - 25) ** 2 + (xx - 25) ** 2 <= 100] = 1
    volume, _ = reconstruct_labels(stack, np.diag([1.0, 1.0, 10.0, 1.0]), 10, "cpd")
    areas = [(volume[:, :, grid.acquired_index(0, 10) + i] == 1).sum() for i in range(11)]
    assert areas[0] == 0 and areas[-1] == (stack[..., 1] == 1).sum()
    assert all(np.diff(areas) >= 0)


def test_linear_image_interpolation():
    stack = np.zeros((4, 4, 2), np.float32)
    stack[..., 1] = 10.0
    image, _ = reconstruct_image(stack, np.eye(4), 10, "linear")
    assert image[0, 0, grid.acquired_index(0, 10) + 3] == pytest.approx(3.0)
    assert image[0, 0, 0] == 0.0 and image[0, 0, -1] == 10.0
