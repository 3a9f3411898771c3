"""Cohort figures: each writes a readable PNG of the expected size, atomically, without a display."""

import os
import subprocess
import sys

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from cinerecon.phenotypes import PHENOTYPE_COLUMNS
from cinerecon.plots import bland_altman, dice_boxplot, lax_overlay, lax_overlay_grid

MIN_BYTES = 5_000


def read_png(path):
    assert path.exists() and path.stat().st_size > MIN_BYTES
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary files left
    return mpimg.imread(path)


@pytest.fixture
def phenotype_rows(rng):
    truth = pd.DataFrame(rng.uniform(40, 200, size=(12, len(PHENOTYPE_COLUMNS))), columns=list(PHENOTYPE_COLUMNS))
    truth.insert(0, "subject", [f"S{i:02d}" for i in range(12)])
    frames = []
    for method, bias in (("truth", 0.0), ("labels", 1.0), ("nn", -5.0), ("sdf", 3.0)):
        f = truth.copy()
        f.insert(1, "method", method)
        if method != "truth":
            f[list(PHENOTYPE_COLUMNS)] += bias + rng.normal(0, 4, size=(12, len(PHENOTYPE_COLUMNS)))
        frames.append(f)
    rows = pd.concat(frames, ignore_index=True)
    rows.loc[rows.index[-1], "LVEF"] = np.nan  # a missing value only drops that pair
    return rows


@pytest.fixture
def lax_rows(rng):
    rows = [
        dict(subject=f"S{s}", method=m, phase=ph, view=v, structure=st, dice=rng.uniform(0.5, 0.95),
             coverage=1.0, n_ref_pixels=200)
        for m in ("nn", "linear", "sdf") for s in range(6) for ph in ("ED", "ES")
        for v in ("2ch", "3ch", "4ch") for st in ("LVC", "LVM", "RVC")
    ]
    rows = pd.DataFrame(rows)
    rows.loc[0, "dice"] = np.nan
    return rows


def test_bland_altman(tmp_path, phenotype_rows):
    path = tmp_path / "ba.png"
    bland_altman(phenotype_rows, "truth", None, path)
    # nine phenotypes on a 3 x 3 grid of 3.6 x 3.0 inch panels at 120 dpi
    assert read_png(path).shape == (1080, 1296, 4)
    bland_altman(phenotype_rows, "truth", ["LVEDV", "LVEF"], tmp_path / "two.png")
    assert read_png(tmp_path / "two.png").shape == (360, 864, 4)
    with pytest.raises(ValueError, match="reference"):
        bland_altman(phenotype_rows, "gt", ["LVEDV"], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_dice_boxplot_lax_and_truth(tmp_path, lax_rows):
    dice_boxplot(lax_rows, tmp_path / "lax.png")
    image = read_png(tmp_path / "lax.png")
    assert image.ndim == 3 and image.shape[2] == 4 and image.shape[1] > 2 * image.shape[0]  # three panels side by side
    dice_boxplot(lax_rows, tmp_path / "lvc.png", structure="LVC")
    assert read_png(tmp_path / "lvc.png").shape[1] < image.shape[1]
    truth = lax_rows.drop(columns=["view", "coverage", "n_ref_pixels"]).assign(hd95=2.0)
    dice_boxplot(truth, tmp_path / "truth.png", metric="hd95", method_order=["sdf", "nn"])
    assert read_png(tmp_path / "truth.png").ndim == 3


def disc(shape, centre, radius):
    x, y = np.mgrid[: shape[0], : shape[1]]
    return (x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= radius**2


def overlay_panel(shift=0):
    shape = (96, 80)
    image = np.random.default_rng(1).normal(0.0, 0.1, shape) + disc(shape, (48, 40), 25)
    ref = np.zeros(shape, np.uint8)
    ref[disc(shape, (48, 40), 25)] = 2
    ref[disc(shape, (48, 40), 15)] = 1
    ref[disc(shape, (20, 20), 8)] = 4  # LA: LAX-only, not drawn by default
    recon = np.zeros(shape, np.uint8)
    recon[disc(shape, (48 + shift, 40), 24)] = 2
    recon[disc(shape, (48 + shift, 40), 14)] = 1
    return image[..., None, None], ref[..., None], recon  # LAX arrays keep singleton Z/T axes


def test_lax_overlay_single_and_grid(tmp_path):
    image, ref, recon = overlay_panel(3)
    lax_overlay(image, ref, recon, tmp_path / "one.png", "SYN0001 4ch ED")
    one = read_png(tmp_path / "one.png")
    assert one.shape == (408, 384, 4)
    # the LVC contours are drawn in tab:red (0.839, 0.153, 0.157)
    red = (np.abs(one[..., 0] - 0.839) < 0.08) & (one[..., 1] < 0.3) & (one[..., 2] < 0.3)
    assert red.sum() > 50
    panels = [(*overlay_panel(s), f"S{s} 2ch") for s in range(4)]
    lax_overlay(panels, path=tmp_path / "list.png", title="four panels")
    lax_overlay_grid(panels, tmp_path / "grid.png")
    assert read_png(tmp_path / "list.png").shape == (816, 1152, 4)  # 2 rows x 3 columns of 3.2 x 3.4 in
    assert read_png(tmp_path / "grid.png").shape == (816, 1152, 4)


def test_lax_overlay_rejects_mismatched_shapes(tmp_path):
    image, ref, recon = overlay_panel()
    with pytest.raises(ValueError, match="shapes differ"):
        lax_overlay(image, ref, recon[:-1], tmp_path / "bad.png")
    with pytest.raises(TypeError):
        lax_overlay(image, ref, None, tmp_path / "bad.png")
    assert not list(tmp_path.iterdir())


def test_plots_need_no_display(tmp_path):
    """An interactive MPLBACKEND and no DISPLAY must not matter: figures use the Agg canvas directly."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["MPLBACKEND"] = "TkAgg"
    code = (
        "import sys, pandas as pd; from cinerecon.plots import dice_boxplot;"
        "rows = pd.DataFrame(dict(subject=['a', 'b'], method='nn', phase='ED', structure='LVC', dice=[0.8, 0.9]));"
        f"dice_boxplot(rows, {str(tmp_path / 'x.png')!r});"
        "print('matplotlib.pyplot' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert (tmp_path / "x.png").stat().st_size > 1000


# ---- the learning-curve figure: acquired slices beside generated ones -------------------
def _fine_linear(stack, k):
    """A fine-grid volume (X, Y, M) linearly interpolated between the slices of stack (X, Y, Z)."""
    from cinerecon.baselines.grid import fine_positions

    positions = np.clip(fine_positions(stack.shape[-1], k), 0, stack.shape[-1] - 1)
    lo = np.floor(positions).astype(int)
    hi = np.minimum(lo + 1, stack.shape[-1] - 1)
    t = positions - lo
    return stack[..., lo] * (1 - t) + stack[..., hi] * t


def test_panel_rows_pick_acquired_and_midway_slices():
    from cinerecon.plots.generated import panel_rows, slice_columns

    z, k = 6, 4
    acquired = np.broadcast_to(np.arange(z, dtype=np.float32) / 10, (5, 5, z)).copy()
    rows = panel_rows(acquired, {"m": _fine_linear(acquired, k)}, k, slice_columns(z))
    assert slice_columns(z) == [1, 2, 4] and slice_columns(2) == [0]
    for j, (at, between) in zip(slice_columns(z), rows["m"]):
        np.testing.assert_allclose(at, j / 10, atol=1e-6)
        np.testing.assert_allclose(between, (j + 0.5) / 10, atol=1e-6)
    for j, (at, between) in zip(slice_columns(z), rows["acquired | linear"]):
        np.testing.assert_allclose(at, j / 10)
        np.testing.assert_allclose(between, (j + 0.5) / 10, atol=1e-6)
    with pytest.raises(ValueError, match="expected 25 for 6 slices"):
        panel_rows(acquired, {"m": np.zeros((5, 5, 24))}, k, [1])
    with pytest.raises(ValueError, match="needs a next slice"):
        panel_rows(acquired, {}, k, [5])


def test_panel_rows_with_odd_k_compare_the_same_position():
    """k = 7: the fine slice after acquired slice j is at j + 3/7, and linear's row is there too."""
    from cinerecon.plots.generated import between_fraction, panel_rows

    z, k = 4, 7
    acquired = np.broadcast_to(np.arange(z, dtype=np.float32), (3, 3, z)).copy()
    rows = panel_rows(acquired, {"m": _fine_linear(acquired, k)}, k, [0, 2])
    assert between_fraction(k) == pytest.approx(3 / 7) and between_fraction(10) == 0.5
    for j, ((at, between), (lin_at, lin_between)) in zip([0, 2], zip(rows["m"], rows["acquired | linear"])):
        np.testing.assert_allclose(at, j, atol=1e-6)
        np.testing.assert_allclose(between, j + 3 / 7, atol=1e-6)
        np.testing.assert_allclose(lin_between, j + 3 / 7, atol=1e-6)


def test_generated_slices_figure_from_a_results_folder(tmp_path):
    import json

    from cinerecon.io.nifti import save_nifti
    from cinerecon.layout import Layout
    from cinerecon.plots.generated import generated_slices_figure

    layout, z, k = Layout(tmp_path), 5, 2
    stack = np.random.default_rng(0).uniform(0, 100, (8, 8, z, 3)).astype(np.float32)
    save_nifti(layout.aligned("S1")["sa"], stack, np.eye(4))
    for method in ("dmcvr", "deeprecon_10"):
        files = layout.recon(method, "S1", images=True)
        files["record"].parent.mkdir(parents=True)
        files["record"].write_text(json.dumps({"frames": {"ED": 1, "ES": 2}, "k": k}))
        save_nifti(files["image_ED"], _fine_linear(stack[..., 1] / 50 - 1, k), np.eye(4))
    assert generated_slices_figure(tmp_path, tmp_path / "slices.png", title="x1") == "S1"
    drawn = mpimg.imread(tmp_path / "slices.png")
    assert drawn.shape[0] > 3 * 100 and drawn.shape[1] > 6 * 100  # 3 rows, 3 pairs of panels
    files = Layout(tmp_path).recon("dmcvr", "S1", images=True)
    files["record"].write_text(json.dumps({"frames": {"ED": 2, "ES": 2}, "k": k}))
    with pytest.raises(ValueError, match="disagree on the ED frame"):
        generated_slices_figure(tmp_path, tmp_path / "other.png")
