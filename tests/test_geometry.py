import numpy as np
import pytest

from cinerecon import geometry as G


def oblique_affine(spacing=(1.8, 1.8, 10.0), angle=0.4, origin=(12.0, -30.0, 7.0)):
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s, 0], [s * 0.8, c * 0.8, -0.6], [s * 0.6, c * 0.6, 0.8]])
    rot /= np.linalg.norm(rot, axis=0)
    affine = np.eye(4)
    affine[:3, :3] = rot * np.asarray(spacing)
    affine[:3, 3] = origin
    return affine


def test_voxel_world_round_trip(rng):
    affine = oblique_affine()
    ijk = rng.uniform(0, 50, size=(100, 3))
    assert np.allclose(G.world_to_voxel(affine, G.apply_affine(affine, ijk)), ijk)
    assert np.allclose(G.spacing(affine), [1.8, 1.8, 10.0])


def test_slice_affines_place_each_slice():
    affine = oblique_affine()
    slices = G.stack_slice_affines(affine, 5)
    for k, sl in enumerate(slices):
        assert np.allclose(G.apply_affine(sl, [3, 4, 0]), G.apply_affine(affine, [3, 4, k]))


def test_shift_slice_affine_moves_in_plane_by_mm():
    affine = oblique_affine()
    shifted = G.shift_slice_affine(affine, 2.0, -1.5)
    delta = G.apply_affine(shifted, [7, 9, 0]) - G.apply_affine(affine, [7, 9, 0])
    assert np.isclose(np.linalg.norm(delta), np.hypot(2.0, 1.5))
    assert np.isclose(delta @ G.plane_normal(affine), 0.0)


def test_crop_keeps_world_coordinates(rng):
    affine = oblique_affine()
    start = (17, 23, 0)
    cropped = G.crop_affine(affine, start)
    ijk = rng.uniform(0, 30, size=(20, 3))
    assert np.allclose(G.apply_affine(cropped, ijk), G.apply_affine(affine, ijk + start))


def test_upsample_z_puts_slice_jk_on_slice_j():
    affine = oblique_affine()
    k = 5
    fine = G.upsample_z_affine(affine, k)
    for j in range(4):
        assert np.allclose(G.apply_affine(fine, [2, 3, j * k]), G.apply_affine(affine, [2, 3, j]))
    assert np.allclose(G.spacing(fine), [1.8, 1.8, 2.0])


def test_upsample_stack_z_values():
    stack = np.zeros((2, 2, 3))
    stack[..., 1] = 10.0
    stack[..., 2] = 20.0
    out, _ = G.upsample_stack_z(stack, np.eye(4), 4, order=1)
    assert out.shape[2] == 9
    assert np.allclose(out[0, 0], [0, 2.5, 5, 7.5, 10, 12.5, 15, 17.5, 20])
    nearest, _ = G.upsample_stack_z(stack, np.eye(4), 4, order=0)
    assert np.allclose(nearest[0, 0], [0, 0, 10, 10, 10, 10, 20, 20, 20])


def sphere_volume(radius=20.0, spacing=1.0):
    n = int(2 * radius / spacing) + 11
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = -(n - 1) / 2 * spacing
    grid = G.apply_affine(affine, np.argwhere(np.ones((n, n, n)))).reshape(n, n, n, 3)
    return (np.linalg.norm(grid, axis=-1) <= radius).astype(np.uint8), affine


@pytest.mark.parametrize("method", ["nearest", "onehot"])
def test_plane_through_sphere_gives_disc(method):
    """A plane at height h through a sphere of radius R cuts a disc of radius sqrt(R^2-h^2)."""
    volume, affine = sphere_volume(20.0, 1.0)
    h, px = 8.0, 0.5
    normal = np.array([1.0, 1.0, 1.0]) / np.sqrt(3)
    u = np.cross(normal, [0, 0, 1.0])
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    shape = (120, 120)
    plane = np.eye(4)
    plane[:3, 0], plane[:3, 1], plane[:3, 2] = u * px, v * px, normal
    plane[:3, 3] = h * normal - (shape[0] - 1) / 2 * px * u - (shape[1] - 1) / 2 * px * v
    disc = G.resample_labels_to_plane(volume, affine, plane, shape, method)
    expected_area = np.pi * (20.0**2 - h**2)
    assert disc.sum() * px * px == pytest.approx(expected_area, rel=0.04)
    centre = G.apply_affine(plane, np.c_[np.argwhere(disc), np.zeros(disc.sum())]).mean(0)
    assert np.allclose(centre, h * normal, atol=0.3)


def test_image_resampling_is_linear():
    """Linear interpolation of a linear ramp is exact at any oblique position."""
    affine = oblique_affine(spacing=(1.5, 1.5, 3.0))
    idx = np.indices((20, 20, 10)).reshape(3, -1).T
    world = G.apply_affine(affine, idx)
    ramp = (world @ np.array([0.3, -0.2, 0.5])).reshape(20, 20, 10)
    pts = G.apply_affine(affine, np.array([[5.3, 7.7, 4.2], [10.1, 3.9, 6.6]]))
    values = G.sample_image(ramp, affine, pts)
    assert np.allclose(values, pts @ np.array([0.3, -0.2, 0.5]))
