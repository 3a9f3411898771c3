import time

import numpy as np
import pytest
import torch

from cinerecon.metrics.per_label import METRIC_NAMES
from cinerecon.io.nifti import save_nifti
from cinerecon.latent import wplus_segnet_files
from cinerecon.latent.deeprecon_files import save_latents
from cinerecon.latent.wplus_segnet_files import code_label_set, wplus_segnet_rows
from cinerecon.models.data import frames_to_slices
from cinerecon.models.stylegan2 import StyleGAN2Config
from cinerecon.models.wplus_segnet import (WPlusSegNet, WPlusSegNetConfig, load_wplus_segnet, predict_wplus,
                                           save_wplus_segnet, train_wplus_segnet)

SIZE, NUM_WS, W_DIM = 32, 8, 8
SMALL = dict(resolution=SIZE, num_ws=NUM_WS, w_dim=W_DIM, channel_base=256, channel_max=16)


def disc_labels(params: np.ndarray, size: int = SIZE) -> np.ndarray:
    """(N, size, size) uint8: LVC disc of radius r at (cx, cy), LVM ring r..r+3, RVC disc of radius 4 beside it."""
    x, y = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    out = np.zeros((len(params), size, size), np.uint8)
    for lab, (cx, cy, r) in zip(out, params):
        d = np.hypot(x - cx, y - cy)
        lab[np.hypot(x - (cx + r + 8), y - cy) <= 4] = 3
        lab[d <= r + 3] = 2
        lab[d <= r] = 1
    return out


def disc_problem(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes that encode (cx, cy, r) linearly in every layer's w (plus noise), and the analytic labels."""
    rng = np.random.default_rng(seed)
    params = np.stack([rng.uniform(8, 12, n), rng.uniform(10, 22, n), rng.uniform(3, 5, n)], axis=1)
    mix = np.random.default_rng(123).normal(size=(3, W_DIM))             # the same "generator" for every set
    codes = (params - params.mean(0)) @ mix
    codes = np.repeat(codes[:, None], NUM_WS, axis=1) + 0.05 * rng.normal(size=(n, NUM_WS, W_DIM))
    return codes.astype(np.float32), disc_labels(params)


@pytest.mark.parametrize("resolution", [32, 24, 20])
def test_output_shape_and_classes(resolution):
    config = WPlusSegNetConfig.tiny(**{**SMALL, "resolution": resolution})
    logits = WPlusSegNet(config)(torch.randn(3, NUM_WS, W_DIM))
    assert logits.shape == (3, 4, resolution, resolution)
    with pytest.raises(ValueError, match="W\\+ codes"):
        WPlusSegNet(config)(torch.randn(3, NUM_WS + 2, W_DIM))


def test_config_matches_generator_layout():
    g = StyleGAN2Config.tiny(resolution=96)
    config = WPlusSegNetConfig.tiny().matched_to(g)
    assert (config.num_ws, config.w_dim, config.resolution) == (g.num_ws, g.w_dim, 96)
    assert config.levels == g.levels == (6, 4)
    assert WPlusSegNetConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError):
        WPlusSegNetConfig(resolution=8, num_ws=10)                         # 4 doublings of a 1x1 constant


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = WPlusSegNet(WPlusSegNetConfig.tiny(**SMALL))
    codes = torch.randn(5, NUM_WS, W_DIM) * 3 + 1
    model.set_code_statistics(codes)
    save_wplus_segnet(model, tmp_path / "net.pt")
    loaded = load_wplus_segnet(tmp_path / "net.pt")
    assert loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(loaded(codes), model.eval()(codes))
    assert np.array_equal(predict_wplus(loaded, codes.numpy(), batch_size=2), model(codes).argmax(1).numpy())


@pytest.fixture
def one_thread():
    """One CPU thread for the training test, restored afterwards (other tests' tolerances assume the default)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_learns_discs_from_codes(one_thread):
    tc, tl = disc_problem(96, seed=0)
    vc, vl = disc_problem(32, seed=1)
    start = time.perf_counter()
    model, history = train_wplus_segnet(tc, tl, vc, vl, WPlusSegNetConfig.tiny(**SMALL), epochs=25,
                                        batch_size=16, lr=1e-2, seed=0)
    seconds = time.perf_counter() - start
    best = max(h["val_dice_mean"] for h in history)
    assert set(history[0]) == {"epoch", "train_loss", "val_loss", "val_dice_LVC", "val_dice_LVM", "val_dice_RVC",
                               "val_dice_mean", "seconds"}
    assert best > 0.85, f"best validation Dice {best:.3f} after {seconds:.1f} s"
    pred = predict_wplus(model, vc)
    assert pred.dtype == np.uint8 and pred.shape == vl.shape
    # the returned model is the best epoch's
    inter = [(2 * ((pred == c) & (vl == c)).sum() / ((pred == c).sum() + (vl == c).sum())) for c in (1, 2, 3)]
    assert np.mean(inter) == pytest.approx(best)


def test_rows_of_a_perfect_prediction(tmp_path, monkeypatch):
    n_slices, n_frames, frames = 3, 4, [0, 2]
    rng = np.random.default_rng(0)
    params = np.stack([rng.uniform(8, 12, n_slices * n_frames), rng.uniform(10, 22, n_slices * n_frames),
                       rng.uniform(2, 5, n_slices * n_frames)], axis=1)
    labels = disc_labels(params).reshape(n_frames, n_slices, SIZE, SIZE).transpose(2, 3, 1, 0)  # (X, Y, Z, T)
    labels[:, :, 0, 2] = 0                                                   # an empty slice at ES
    affine = np.diag([1.8, 1.8, 10.0, 1.0])
    save_nifti(tmp_path / "label_sa.nii.gz", labels, affine, dtype=np.uint8)
    save_nifti(tmp_path / "sa.nii.gz", np.zeros(labels.shape, np.int16), affine)
    save_latents(tmp_path / "w.npz", np.zeros((len(frames) * n_slices, NUM_WS, W_DIM), np.float32), frames, n_slices)
    codes, slices = code_label_set({"S1": tmp_path / "w.npz"}, {"S1": tmp_path / "label_sa.nii.gz"})
    assert codes.shape == (6, NUM_WS, W_DIM) and np.array_equal(slices, frames_to_slices(labels, frames))
    # a network that predicts the manual labels exactly
    monkeypatch.setattr(wplus_segnet_files, "predict_wplus", lambda model, c, device=None: slices.astype(np.uint8))
    rows = wplus_segnet_rows("S1", tmp_path / "w.npz", tmp_path / "label_sa.nii.gz", tmp_path / "sa.nii.gz",
                             None, "cpu")
    assert list(rows.columns) == ["subject", "method", "phase", "structure", *METRIC_NAMES]
    assert len(rows) == 6 and set(rows.phase) == {"ED", "ES"} and set(rows.structure) == {"LVC", "LVM", "RVC"}
    assert (rows.method == "wplus_segnet").all() and (rows.subject == "S1").all()
    assert np.allclose(rows.dice, 1.0) and np.allclose(rows.voe, 0.0)
    assert np.allclose(rows[["hd", "hd95", "asd", "assd"]], 0.0)
    # and a wrong one does not: the ES prediction shifted by 2 voxels
    shifted = slices.copy()
    shifted[n_slices:] = np.roll(shifted[n_slices:], 2, axis=1)
    monkeypatch.setattr(wplus_segnet_files, "predict_wplus", lambda model, c, device=None: shifted)
    rows = wplus_segnet_rows("S1", tmp_path / "w.npz", tmp_path / "label_sa.nii.gz", tmp_path / "sa.nii.gz",
                             None, "cpu", method="w")
    es = rows[rows.phase == "ES"]
    assert (es.dice < 1).all() and ((es.hd95 > 0) & (es.hd95 <= 2 * 1.8 + 1e-9)).all()
    assert np.allclose(rows[rows.phase == "ED"].dice, 1)
