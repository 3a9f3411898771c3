"""Held-out-slice evaluation: exact answers on stacks that are linear in z."""

import numpy as np
import pandas as pd
import torch

from cinerecon.baselines.files import heldout_linear_rows
from cinerecon.baselines.methods import LinearOneHot
from cinerecon.io.nifti import save_nifti
from cinerecon.latent.interpolate import lerp, slerp
from cinerecon.metrics import dice
from cinerecon.metrics.heldout import heldout_rows, heldout_summary, interior_slices, neighbour_midpoints


def test_midpoints_of_a_linear_ramp_are_the_held_out_slices():
    stack = torch.arange(6, dtype=torch.float32)[:, None, None] * torch.ones(6, 4, 4)
    mid = neighbour_midpoints(stack, lerp)
    assert interior_slices(6) == [1, 2, 3, 4]
    assert torch.equal(mid, stack[1:5])
    assert len(neighbour_midpoints(stack[:2], lerp)) == 0  # nothing can be held out of two slices


def test_slerp_midpoints_keep_unit_norm():
    codes = torch.nn.functional.normalize(torch.randn(5, 32, generator=torch.Generator().manual_seed(0)), dim=1)
    mid = neighbour_midpoints(codes, slerp)
    assert torch.allclose(mid.norm(dim=1), torch.ones(3), atol=1e-5)


def test_rows_of_a_perfect_rebuild():
    real = np.random.default_rng(0).uniform(-1, 1, (5, 16, 16)).astype(np.float32)
    labels = np.zeros((5, 16, 16), np.uint8)
    labels[:, 4:10, 4:10] = 1
    rows = heldout_rows("S", "m", "ED", real[1:4], labels[1:4], real, labels)
    assert list(rows["slice"]) == [1, 2, 3]
    assert np.isinf(rows["psnr"]).all() and np.allclose(rows["ssim"], 1)
    assert (rows["dice_LVC"] == 1).all()
    assert rows["dice_RVC"].isna().all()  # absent from both sides: no evidence, not a perfect score
    summary = heldout_summary(pd.concat([rows, rows.assign(method="a")]), method_order=["m", "a"])
    assert list(summary["method"]) == ["m", "a"] and list(summary["slices"]) == [3, 3]
    assert summary["dice_LVC_mean"].eq(1).all() and summary["dice_RVC_mean"].isna().all()
    empty = heldout_rows("S", "m", "ED", real[:0], labels[:0], real[:2], labels[:2])  # 2 slices: none held out
    assert empty.empty and "dice_LVC" in empty.columns


def test_linear_baseline_rebuilds_a_z_linear_stack_exactly(tmp_path):
    # intensity linear in z, one disc of constant radius (LVC) through the stack; a smaller
    # disc at frame 1 makes it ES. Averaging neighbours then reproduces every interior slice.
    x, y = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    z = np.arange(7)
    image = np.zeros((32, 32, 7, 2), np.float32)
    labels = np.zeros((32, 32, 7, 2), np.uint8)
    for t, radius in enumerate((8, 5)):
        disc = (x - 16) ** 2 + (y - 16) ** 2 <= radius**2
        labels[..., t] = disc[..., None]
        image[..., t] = 100 + 10 * z[None, None, :] + 50 * disc[..., None]
    affine = np.diag([1.8, 1.8, 10.0, 1.0])
    save_nifti(tmp_path / "sa.nii.gz", image, affine)
    save_nifti(tmp_path / "label_sa.nii.gz", labels, affine, dtype=np.uint8)
    rows = heldout_linear_rows("SYN", tmp_path / "sa.nii.gz", tmp_path / "label_sa.nii.gz")
    assert len(rows) == 2 * 5 and set(rows["phase"]) == {"ED", "ES"}
    assert (rows["psnr"] > 60).all()  # exact up to the [-1, 1] normalisation's rounding
    # labels: exactly what the linear baseline gives at an acquired slice (its in-plane
    # softening of hard labels shaves the disc's rim a little)
    for phase, t in (("ED", 0), ("ES", 1)):
        expected = dice(LinearOneHot(labels[..., t], (1.8, 1.8)).between(3, np.array([0.0]))[0] == 1,
                        labels[..., 3, t] == 1)
        assert np.allclose(rows.loc[rows["phase"] == phase, "dice_LVC"], expected) and expected > 0.97
