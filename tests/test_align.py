import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from cinerecon.align import apply_shifts, estimate_shifts
from cinerecon.align.lines import intersection_line, plane_intersection
from cinerecon.io.subject import VIEWS

LAX = [v for v in VIEWS if v != "sa"]


def load(path):
    img = nib.load(path)
    return np.asanyarray(img.dataobj), img.affine


def subject_data(files):
    sa, affine = load(files["sa"])
    return {
        "sa": sa, "affine": affine, "labels": load(files["label_sa"])[0],
        "laxes": {v: load(files[v]) for v in LAX},
        "lax_labels": {v: load(files[f"label_{v}"])[0] for v in LAX},
        "truth": pd.read_csv(files["truth_shifts"], sep="\t").query("view == 'sa'")[["dx_mm", "dy_mm"]].to_numpy(),
    }


def residual_rms(estimate, truth, labels):
    """RMS of estimate - truth over heart slices, after removing the common offset."""
    heart = (labels[..., 0] > 0).any(axis=(0, 1))
    r = (estimate - truth)[heart]
    r -= r.mean(0)
    return float(np.sqrt((r**2).sum(1).mean()))


@pytest.fixture(scope="module")
def shifted(synth_subject):
    return subject_data(synth_subject)


@pytest.mark.parametrize("method, limit", [("intensity", 1.0), ("labels", 1.0)])
def test_estimated_shifts_recover_truth(shifted, method, limit):
    d = shifted
    est, warnings = estimate_shifts(method, d["sa"], d["affine"], d["laxes"], d["labels"], d["lax_labels"])
    uncorrected = residual_rms(np.zeros_like(est), d["truth"], d["labels"])
    corrected = residual_rms(est, d["truth"], d["labels"])
    assert uncorrected > 1.5
    assert corrected < limit and corrected < 0.5 * uncorrected
    assert not [w for w in warnings if "LAX" in w]


@pytest.mark.parametrize("method", ["intensity", "labels"])
def test_unshifted_stack_stays_put(unshifted_subject, method):
    # no worse than uncorrected: shifts that barely lower the mismatch are not applied
    d = subject_data(unshifted_subject)
    est, warnings = estimate_shifts(method, d["sa"], d["affine"], d["laxes"], d["labels"], d["lax_labels"])
    assert not est.any()
    assert any("stack left as acquired" in w for w in warnings)


def test_degrades_gracefully(shifted):
    d = shifted
    none, warnings = estimate_shifts("intensity", d["sa"], d["affine"], {})
    assert not none.any() and "no LAX view" in warnings[0]
    one, warnings = estimate_shifts("intensity", d["sa"], d["affine"], {"la_4ch": d["laxes"]["la_4ch"]})
    assert np.all(np.isfinite(one)) and np.abs(one).max() < 15
    assert any("only one LAX view" in w for w in warnings)
    zeroed = d["sa"].copy()
    zeroed[:, :, 4] = 0
    est, warnings = estimate_shifts("intensity", zeroed, d["affine"], d["laxes"])
    assert any("slice 4 has no signal" in w for w in warnings)
    assert np.all(np.isfinite(est))


def test_apply_shifts_moves_content():
    stack = np.zeros((40, 40, 2, 1), np.float32)
    stack[18:22, 18:22] = 100.0
    labels = (stack > 0).astype(np.uint8)
    shifts = np.array([[3.6, 0.0], [0.0, -1.8]])        # mm at 1.8 mm pixels: 2 and -1 px
    out = apply_shifts(stack, shifts, (1.8, 1.8))
    out_labels = apply_shifts(labels, shifts, (1.8, 1.8), labels=True)
    # the heart moved by +d: the corrected slice shows at p what was at p + d
    assert np.allclose(np.argwhere(out_labels[:, :, 0, 0]).mean(0), [17.5, 19.5])
    assert np.allclose(np.argwhere(out_labels[:, :, 1, 0]).mean(0), [19.5, 20.5])
    assert out[:, :, 0].sum() == pytest.approx(stack[:, :, 0].sum(), rel=1e-3)


def test_plane_intersection_line():
    a = np.eye(4)                                           # z = 0 plane
    b = np.eye(4)
    b[:3, 0], b[:3, 1], b[:3, 2] = [0, 1, 0], [0, 0, 1], [1, 0, 0]
    b[:3, 3] = [5, -5, -10]                                # x = 5 plane
    point, direction = plane_intersection(a, b)
    assert np.isclose(point[0], 5) and np.isclose(point[2], 0)
    assert np.isclose(abs(direction[1]), 1)
    assert plane_intersection(a, a.copy()) is None
    line = intersection_line(a, (20, 20), 0, b, (20, 20), "x")
    assert np.allclose(line.points[:, 0], 5) and np.allclose(line.points[:, 2], 0)
