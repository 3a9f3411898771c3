"""The SAX U-Net: shapes, loss, determinism, learning, checkpoints, normalisation, cine prediction."""

import numpy as np
import pytest
import torch

from cinerecon.models import UNet, UNetConfig, pad_to_multiple, seg_loss, soft_dice
from cinerecon.models.data import augment, normalise_intensity, slices_from_subject
from cinerecon.models.train_seg import (load_checkpoint, plot_history, predict_cine, predict_slices,
                                        save_checkpoint, train_unet)


def disc_ring_data(n, size=32, seed=0):
    """Bright disc (label 1) inside a mid-grey ring (label 2) at random centre/radius, on noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.empty((n, 1, size, size), np.float32)
    labels = np.zeros((n, size, size), np.int64)
    for i in range(n):
        cy, cx = rng.uniform(size * 0.35, size * 0.65, 2)
        r = rng.uniform(size * 0.12, size * 0.22)
        t = rng.uniform(2.0, 4.0)
        d = np.hypot(yy - cy, xx - cx)
        labels[i][d < r + t] = 2
        labels[i][d < r] = 1
        img = np.choose(labels[i], [0.0, 1.0, 0.5]) + rng.normal(0, 0.15, (size, size))
        images[i, 0] = normalise_intensity(img)
    return images, labels


@pytest.fixture(scope="module")
def disc_data():
    x, y = disc_ring_data(96, seed=1)
    return x[:72], y[:72], x[72:], y[72:]


# (a) shapes ---------------------------------------------------------------------------
@pytest.mark.parametrize("config,size,batch", [(UNetConfig.tiny(), 32, 3), (UNetConfig.paper(), 64, 1),
                                               (UNetConfig.tiny(norm="instance", up="bilinear"), 16, 2),
                                               (UNetConfig.tiny(norm="group", dropout=0.2), 24, 2)])
def test_forward_shapes(config, size, batch):
    model = UNet(config).eval()
    x = torch.zeros(batch, 1, size, size)
    with torch.inference_mode():
        assert model(x).shape == (batch, 4, size, size)
        m = 2 ** config.depth
        assert model.bottleneck(x).shape == (batch, config.width * m, size // m, size // m)


def test_indivisible_size_raises_and_predict_slices_pads():
    model = UNet(UNetConfig.tiny())
    with pytest.raises(ValueError, match="divisible"):
        model(torch.zeros(1, 1, 30, 33))
    images = np.random.default_rng(0).uniform(-1, 1, (5, 1, 30, 37)).astype(np.float32)
    out = predict_slices(model, images, batch_size=2)
    assert out.shape == (5, 30, 37) and out.dtype == np.uint8 and out.max() < 4
    assert model.training  # mode restored


def test_pad_to_multiple_crops_back():
    x = torch.arange(5 * 7, dtype=torch.float32).reshape(1, 1, 5, 7)
    xp, (rows, cols) = pad_to_multiple(x, 8)
    assert xp.shape == (1, 1, 8, 8)
    assert torch.equal(xp[..., rows, cols], x)


def test_config_round_trip_and_validation():
    c = UNetConfig.paper(norm="group", dropout=0.1)
    assert UNetConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError):
        UNetConfig.from_dict({**c.to_dict(), "wdith": 3})
    with pytest.raises(ValueError):
        UNetConfig(norm="layer")


# (b) loss ------------------------------------------------------------------------------
def test_seg_loss_perfect_and_wrong():
    target = torch.from_numpy(disc_ring_data(2, 16)[1])
    perfect = 50.0 * torch.nn.functional.one_hot(target, 4).movedim(-1, 1).float()
    wrong = 50.0 * torch.nn.functional.one_hot((target + 1) % 4, 4).movedim(-1, 1).float()
    assert seg_loss(perfect, target).item() < 1e-6
    assert seg_loss(wrong, target).item() > 10


def test_soft_dice_hand_example():
    # Two classes on 1x1x2x2; probabilities set exactly through log-probabilities.
    p1 = torch.tensor([[0.8, 0.3], [0.4, 0.1]])
    logits = torch.stack([torch.log(1 - p1), torch.log(p1)])[None]
    target = torch.tensor([[[1, 1], [0, 0]]])
    # class 1: inter = 0.8 + 0.3 = 1.1, sum p = 1.6, sum g = 2
    expected_1 = (2 * 1.1 + 1) / (1.6 + 2 + 1)
    expected_0 = (2 * (0.6 + 0.9) + 1) / (2.4 + 2 + 1)
    d = soft_dice(logits, target)
    assert d[1].item() == pytest.approx(expected_1, abs=1e-6)
    assert d[0].item() == pytest.approx(expected_0, abs=1e-6)
    ce = -(np.log(0.8) + np.log(0.3) + np.log(0.6) + np.log(0.9)) / 4
    assert seg_loss(logits, target).item() == pytest.approx(ce + 1 - expected_1, abs=1e-6)


def test_seg_loss_leaves_classes_absent_from_the_batch_out_of_the_dice_term():
    """A batch without RV must not reward predicting RV nowhere (it collapsed the RV class
    when only ED/ES slices were labelled); CE alone judges RV there."""
    target = torch.from_numpy(disc_ring_data(2, 16)[1])
    target[target == 3] = 0
    logits = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    ce = torch.nn.functional.cross_entropy(logits, target)
    present = soft_dice(logits, target)[1:3].mean()
    assert seg_loss(logits, target).item() == pytest.approx((ce + 1 - present).item(), abs=1e-6)


# (c) determinism -----------------------------------------------------------------------
def test_training_is_deterministic(disc_data):
    x, y = disc_data[0][:24], disc_data[1][:24]
    xv, yv = disc_data[2][:8], disc_data[3][:8]
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    prev = torch.are_deterministic_algorithms_enabled()
    runs = [train_unet(x, y, xv, yv, UNetConfig.tiny(dropout=0.1), epochs=2, batch_size=8, lr=1e-3, seed=7)
            for _ in range(2)]
    assert torch.equal(torch.rand(3), before)  # global RNG untouched
    assert torch.are_deterministic_algorithms_enabled() == prev
    (m1, h1), (m2, h2) = runs
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in h1] == \
           [{k: v for k, v in h.items() if k != "seconds"} for h in h2]
    other, _ = train_unet(x, y, xv, yv, UNetConfig.tiny(), epochs=1, batch_size=8, seed=8)
    assert not torch.equal(next(iter(other.state_dict().values())), next(iter(m1.state_dict().values())))


# (d) learning --------------------------------------------------------------------------
def test_tiny_unet_learns_disc_and_ring(disc_data, tmp_path):
    x, y, xv, yv = disc_data
    messages = []
    model, history = train_unet(x, y, xv, yv, UNetConfig.tiny(), epochs=20, batch_size=8, lr=3e-3,
                                seed=0, log=messages.append)
    pred = predict_slices(model, xv)
    inter = np.count_nonzero((pred == 1) & (yv == 1))
    dice1 = 2 * inter / (np.count_nonzero(pred == 1) + np.count_nonzero(yv == 1))
    assert dice1 > 0.9, (dice1, history[-1])
    best = max(history, key=lambda h: h["val_dice_mean"])  # the best-validation weights are kept
    assert best["val_dice_LVC"] == pytest.approx(dice1)
    assert best["val_dice_LVM"] > 0.8 and best["val_dice_RVC"] == 1.0  # no RV in the data, none predicted
    assert len(history) == len(messages) == 20
    assert set(history[0]) >= {"epoch", "train_loss", "val_loss", "val_dice_LVC", "val_dice_LVM",
                               "val_dice_RVC", "seconds"}
    plot_history(history, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*"))  # no temporary left behind


# (e) checkpoint ------------------------------------------------------------------------
def test_checkpoint_round_trip(disc_data, tmp_path):
    x, y, xv, yv = disc_data
    model, _ = train_unet(x[:16], y[:16], xv[:4], yv[:4], UNetConfig.tiny(norm="group"), epochs=1,
                          batch_size=8, seed=3)
    path = tmp_path / "seg.pt"
    save_checkpoint(model, model.config, path)
    raw = torch.load(path, weights_only=True)
    assert raw["config"] == model.config.to_dict()
    loaded = load_checkpoint(path)
    assert loaded.config == model.config and not loaded.training
    np.testing.assert_array_equal(predict_slices(loaded, xv), predict_slices(model, xv))
    with torch.inference_mode():
        assert torch.equal(loaded(torch.from_numpy(xv)), model.eval()(torch.from_numpy(xv)))
    torch.save({"not": "a checkpoint"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a cinerecon"):
        load_checkpoint(tmp_path / "other.pt")


# (f) normalisation and data ------------------------------------------------------------
def test_normalise_intensity_range():
    v = np.random.default_rng(0).gamma(2.0, 100.0, (20, 20, 4, 3))
    n = normalise_intensity(v)
    assert n.dtype == np.float32 and n.shape == v.shape
    assert n.min() == -1.0 and n.max() == 1.0
    assert np.mean(n == -1.0) == pytest.approx(0.01, abs=0.005)  # the clipped 1st percentile
    np.testing.assert_array_equal(normalise_intensity(np.full((3, 3), 7.0)), 0.0)


def test_slices_from_subject_order_and_skip():
    img = np.random.default_rng(0).uniform(0, 100, (8, 6, 3, 5))
    lab = np.zeros(img.shape, np.uint8)
    lab[2:4, 2:4, 1, 0] = 1
    lab[2:4, 2:4, 2, 3] = 2
    x, y = slices_from_subject(img, lab, [0, 3])
    assert x.shape == (6, 1, 8, 6) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(y[1], lab[:, :, 1, 0])   # frame-major: (frame 0, z 1)
    np.testing.assert_array_equal(y[5], lab[:, :, 2, 3])   # (frame 3, z 2)
    np.testing.assert_allclose(x[4, 0], normalise_intensity(img)[:, :, 1, 3])
    xs, ys = slices_from_subject(img, lab, [0, 3], skip_empty=True)
    assert len(xs) == 2 and ys.reshape(2, -1).any(axis=1).all()


def test_augment_is_seeded_and_consistent():
    x, y = map(torch.from_numpy, disc_ring_data(4, 32))
    a1 = augment(x, y, torch.Generator().manual_seed(5))
    a2 = augment(x, y, torch.Generator().manual_seed(5))
    assert all(torch.equal(p, q) for p, q in zip(a1, a2))
    xa, ya = a1
    assert xa.shape == x.shape and ya.dtype == y.dtype and xa.min() >= -1 and xa.max() <= 1
    # translation moves image and labels together: label counts are preserved unless cut at the border
    assert (ya > 0).sum() <= (y > 0).sum()
    assert set(ya.unique().tolist()) <= {0, 1, 2}


# (g) cine prediction -------------------------------------------------------------------
def test_predict_cine_shape_and_dtype():
    model = UNet(UNetConfig.tiny())
    image = np.random.default_rng(0).uniform(0, 300, (30, 26, 5, 7)).astype(np.float32)
    out = predict_cine(model, image, frames=[0, 4], batch_size=4)
    assert out.shape == (30, 26, 5, 2) and out.dtype == np.uint8
    # same as predicting the slices one by one
    norm = normalise_intensity(image)
    one = predict_slices(model, norm[:, :, 3, 4].reshape(1, 1, 30, 26))
    np.testing.assert_array_equal(out[:, :, 3, 1], one[0])
    assert predict_cine(model, image).shape == (30, 26, 5, 7)
