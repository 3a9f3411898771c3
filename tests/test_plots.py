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
    summary = bland_altman(phenotype_rows, "truth", None, path)
    # nine phenotype rows x three method columns (labels, nn, sdf: all baselines)
    assert list(summary) == [(p, m) for p in PHENOTYPE_COLUMNS for m in ("labels", "nn", "sdf")]
    assert summary[("LVEF", "sdf")]["n"] == 11  # the NaN drops that pair only
    image = read_png(path)
    assert image.shape[0] > image.shape[1]  # tall: nine rows of three panels
    two = bland_altman(phenotype_rows, "truth", ["LVEDV", "LVEF"], tmp_path / "two.png", methods=["sdf", "nn"])
    assert list(two) == [("LVEDV", "sdf"), ("LVEDV", "nn"), ("LVEF", "sdf"), ("LVEF", "nn")]
    assert read_png(tmp_path / "two.png").shape[1] < image.shape[1] * 1.01
    with pytest.raises(ValueError, match="reference"):
        bland_altman(phenotype_rows, "gt", ["LVEDV"], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def known_rows():
    """Differences known exactly: nn +2 mL (LoA +2 -+ 1.96), dmcvr +200 mL; rows in a mixed method order."""
    truth = np.array([60.0, 90.0, 120.0, 150.0, 180.0, 210.0])
    wiggle = np.array([-1.0, 1.0, -1.0, 1.0, -1.0, 1.0])  # mean 0, sd 1.095
    frames = [("dmcvr", 200.0), ("mystery_net", 10.0), ("directseg", 5.0), ("nn", 2.0), ("truth", 0.0),
              ("labels", -1.0), ("gemini_gan", 50.0)]
    rows = []
    for method, bias in frames:
        values = truth if method == "truth" else truth + bias + wiggle * max(1.0, bias / 20)
        for i, (v, ef) in enumerate(zip(values, truth / 4)):
            rows.append(dict(subject=f"S{i}", method=method, LVEDV=v, LVEF=ef + (0 if method == "truth" else 1.0)))
    rows = pd.DataFrame(rows)
    rows.loc[(rows["method"] == "directseg") & (rows["subject"] == "S0"), "LVEDV"] = np.nan  # one missing value
    rows.loc[rows["method"] == "gemini_gan", "LVEF"] = np.nan  # no pair at all: a "no data" panel
    rows = rows[(rows["method"] != "labels") | (rows["subject"] == "S3")]  # a single subject: no limits
    return rows


def test_bland_altman_small_multiples(tmp_path):
    from cinerecon.tables.cohort import agreement_stats, paired_phenotypes, phenotype_agreement

    rows = known_rows()
    path = tmp_path / "ba.png"
    summary = bland_altman(rows, "truth", ["LVEDV", "LVEF"], path)
    read_png(path)
    columns = ["nn", "labels", "directseg", "dmcvr", "gemini_gan", "mystery_net"]
    # a panel per (phenotype, method); columns baselines, segmentation, generative, other
    assert list(summary) == [(p, m) for p in ("LVEDV", "LVEF") for m in columns]
    assert [summary[("LVEDV", m)]["family"] for m in columns] == \
        ["baselines", "baselines", "segmentation", "generative", "generative", "other"]
    assert [summary[("LVEF", m)]["column"] for m in columns] == list(range(len(columns)))

    nn, dmcvr = summary[("LVEDV", "nn")], summary[("LVEDV", "dmcvr")]
    assert nn["bias"] == pytest.approx(2.0) and dmcvr["bias"] == pytest.approx(200.0)
    # the baselines' y-range is theirs (about -4 .. +5 mL), not stretched to the generative +200 mL
    assert -6 < nn["ylim"][0] < 0 < 4 < nn["ylim"][1] < 8
    assert summary[("LVEDV", "labels")]["ylim"] == nn["ylim"]  # shared within a family and row
    assert dmcvr["ylim"][1] > 200 and summary[("LVEDV", "gemini_gan")]["ylim"] == dmcvr["ylim"]
    assert summary[("LVEF", "nn")]["ylim"] != nn["ylim"]  # each phenotype row has its own scale

    # the printed numbers are the agreement table's
    table = phenotype_agreement(rows, "truth", ["LVEDV", "LVEF"]).set_index(["phenotype", "method"])
    for (p, m), entry in summary.items():
        stats = agreement_stats(*paired_phenotypes(rows, m, "truth", p))
        for key in ("n", "bias", "sd", "loa_low", "loa_high"):
            np.testing.assert_equal(entry[key], stats[key])
            np.testing.assert_equal(entry[key], table.loc[(p, m), key])
    assert nn["label"] == "n=6  bias +2.0\nLoA -0.1 to +4.1"
    assert dmcvr["label"].startswith("n=6  bias +200\nLoA +")
    assert summary[("LVEDV", "directseg")]["n"] == 5  # the NaN drops one pair
    assert summary[("LVEF", "gemini_gan")]["n"] == 0 and summary[("LVEF", "gemini_gan")]["label"] == "no data"
    assert summary[("LVEDV", "labels")]["n"] == 1 and summary[("LVEDV", "labels")]["label"].endswith("LoA n/a")

    # method order within a family follows the caller's; methods not asked for are left out
    chosen = bland_altman(rows, "truth", ["LVEDV"], tmp_path / "some.png", methods=["dmcvr", "labels", "nn"])
    assert [m for _, m in chosen] == ["labels", "nn", "dmcvr"]


def test_bland_altman_many_methods_and_none(tmp_path):
    rows = known_rows()
    wide = pd.concat([rows] + [rows[rows["method"] == "nn"].assign(method=f"nn{i}") for i in range(24)])
    bland_altman(wide, "truth", ["LVEDV"], tmp_path / "wide.png")
    assert max(read_png(tmp_path / "wide.png").shape[:2]) <= 4000  # dpi drops, the PNG stays bounded
    only = rows[rows["method"] == "truth"]
    assert bland_altman(only, "truth", ["LVEDV"], tmp_path / "alone.png") == {}
    assert (tmp_path / "alone.png").exists()


def test_method_family():
    from cinerecon.plots import METHOD_FAMILIES, method_family

    assert METHOD_FAMILIES == ("baselines", "segmentation", "generative", "other")
    assert [method_family(m) for m in ("nn", "linear", "sdf", "cpd", "labels")] == ["baselines"] * 5
    assert [method_family(m) for m in ("directseg", "wplus_segnet", "unet_seg")] == ["segmentation"] * 3
    assert [method_family(m) for m in ("deeprecon_10k", "deeprecon_no", "dmcvr", "diffae", "gemini_gan")] == \
        ["generative"] * 5
    assert method_family("brand_new") == "other"


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
