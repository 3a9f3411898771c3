"""StyleGAN2 G/D, W+ encoder and feature distances: shapes, invariants, determinism, learning, checkpoints.

Training runs use a very small configuration at 16 x 16 so that the file stays
fast; torch runs single-threaded here (restored afterwards), which is faster
for such small tensors and immune to oversubscription on a busy machine.
"""

import math

import numpy as np
import pytest
import torch

from cinerecon.models.encoder import (Encoder, EncoderConfig, FeatureDistance, PerceptualDistance, encode_images,
                                      load_encoder, save_encoder, train_encoder, unet_features)
from cinerecon.models.stylegan2 import (Discriminator, Generator, ModulatedConv, StyleGAN2Config,
                                        discriminator_features, generate_images, load_discriminator,
                                        load_generator, modulated_conv2d, save_discriminator, save_generator,
                                        train_stylegan2)
from cinerecon.models.unet import UNet, UNetConfig


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def small(resolution=16, **kw) -> StyleGAN2Config:
    """Channels 32-16-8 at 4-8-16: a few ms per step at batch 16."""
    return StyleGAN2Config.tiny(**{"resolution": resolution, "channel_base": 256, "channel_max": 32,
                                   "z_dim": 32, "w_dim": 32, **kw})


def discs(n, size, seed=0):
    """A trivially learnable data set: a bright disc (+1) of random centre and radius on -1."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.full((n, 1, size, size), -1.0, np.float32)
    for i in range(n):
        cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
        r = rng.uniform(size * 0.15, size * 0.3)
        out[i, 0][np.hypot(yy - cy, xx - cx) < r] = 1.0
    return out


def pixel_w1(a, b, m=20000):
    """1-D Wasserstein distance between the pixel-value distributions of two image sets."""
    qa = np.quantile(a.ravel(), np.linspace(0, 1, m))
    qb = np.quantile(b.ravel(), np.linspace(0, 1, m))
    return float(np.abs(qa - qb).mean())


def sample(G, n=64, seed=1, noise_mode="random"):
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return G(z, noise_mode=noise_mode).numpy()


# (a) configs ------------------------------------------------------------------------------
@pytest.mark.parametrize("res,levels,generated,num_ws", [(16, (4, 2), 16, 6), (36, (5, 3), 40, 8),
                                                         (96, (6, 4), 96, 10), (100, (7, 4), 112, 10),
                                                         (120, (4, 5), 128, 12), (128, (4, 5), 128, 12)])
def test_levels_cover_resolution(res, levels, generated, num_ws):
    cfg = StyleGAN2Config(resolution=res)
    assert cfg.levels == levels and cfg.generated_resolution == generated and cfg.num_ws == num_ws
    assert cfg.generated_resolution >= res and 4 <= cfg.levels[0] <= 7


def test_config_round_trip_and_presets():
    for cfg in (StyleGAN2Config.tiny(), StyleGAN2Config.paper(resolution=128)):
        assert StyleGAN2Config.from_dict(cfg.to_dict()) == cfg
    paper = StyleGAN2Config.paper(resolution=128)
    assert (paper.w_dim, paper.mapping_layers, paper.channels(4), paper.channels(128)) == (512, 8, 512, 256)
    assert max(StyleGAN2Config.tiny().channels(r) for r in (4, 6, 8, 12)) <= 64
    with pytest.raises(ValueError, match="unknown"):
        StyleGAN2Config.from_dict({**StyleGAN2Config.tiny().to_dict(), "wdim": 3})
    ec = EncoderConfig.paper().matched_to(paper)
    assert EncoderConfig.from_dict(ec.to_dict()) == ec and ec.num_ws == 12
    with pytest.raises(ValueError, match="num_ws"):
        EncoderConfig.tiny(num_ws=5).matched_to(paper)


# (b) modulated convolution ------------------------------------------------------------------
def test_demodulation_keeps_unit_variance():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 32, 12, 12, generator=gen)
    weight = torch.randn(16, 32, 3, 3, generator=gen)
    styles = torch.randn(64, 32, generator=gen) * 2.0 + 0.5  # arbitrary scales per sample and channel
    y = modulated_conv2d(x, weight, styles, demodulate=True, padding=0)
    var = y.var(dim=(1, 2, 3))
    assert 0.8 < var.mean().item() < 1.25
    raw = modulated_conv2d(x, weight, styles, demodulate=False, padding=0).var(dim=(1, 2, 3)).mean().item()
    assert raw > 10  # without demodulation the style scale leaks through
    # the module (affine from w, bias 1) keeps it too, whatever w is
    layer = ModulatedConv(32, 16, w_dim=8, kernel=3)
    with torch.no_grad():
        out = layer(x, 3 * torch.randn(64, 8, generator=gen))[..., 1:-1, 1:-1]
    assert 0.8 < out.var(dim=(1, 2, 3)).mean().item() < 1.25


def test_demodulated_equals_per_sample_weights():
    """The shared-weight form equals convolving each sample with its own modulated, demodulated weight."""
    gen = torch.Generator().manual_seed(1)
    x, w, s = torch.randn(3, 4, 7, 7, generator=gen), torch.randn(5, 4, 3, 3, generator=gen), \
        torch.randn(3, 4, generator=gen)
    y = modulated_conv2d(x, w, s, padding=1)
    for n in range(3):
        wn = w * s[n].reshape(1, -1, 1, 1)
        wn = wn / wn.square().sum(dim=(1, 2, 3), keepdim=True).add(1e-8).sqrt()
        torch.testing.assert_close(y[n:n + 1], torch.nn.functional.conv2d(x[n:n + 1], wn, padding=1))


# (c) generator / discriminator -----------------------------------------------------------
@pytest.mark.parametrize("cfg", [small(36), StyleGAN2Config.tiny(resolution=96)])
def test_generator_shapes_and_w_plus(cfg):
    torch.manual_seed(0)
    G, D = Generator(cfg).eval(), Discriminator(cfg).eval()
    assert G.num_ws == cfg.num_ws == G.synthesis.num_ws == 2 * cfg.levels[1] + 2
    z = torch.randn(3, cfg.z_dim)
    with torch.no_grad():
        w = G.mapping(z)
        assert w.shape == (3, cfg.w_dim)
        img_w = G.synthesis(w)
        img_wplus = G.synthesis(w.unsqueeze(1).repeat(1, G.num_ws, 1))
        assert img_w.shape == (3, 1, cfg.resolution, cfg.resolution)
        assert torch.equal(img_w, img_wplus)
        assert torch.equal(G(z), img_w)
        full = G.synthesis(w, crop=False)
        assert full.shape[-1] == cfg.generated_resolution
        m = (cfg.generated_resolution - cfg.resolution) // 2
        assert torch.equal(full[..., m:m + cfg.resolution, m:m + cfg.resolution], img_w)
        # per-layer styles matter: changing one layer's w changes the image
        ws = G.broadcast(w)
        ws[:, -3] += 1.0
        assert not torch.equal(G.synthesis(ws), img_w)
        assert D(img_w).shape == (3,)
    with pytest.raises(ValueError, match="ws must be"):
        G.synthesis(torch.zeros(2, G.num_ws + 1, cfg.w_dim))


def test_noise_modes_and_truncation():
    torch.manual_seed(0)
    G = Generator(small(24)).eval()
    with torch.no_grad():
        for layer in G.synthesis.convs:
            layer.noise_strength.fill_(0.5)
        ws = G.broadcast(G.mapping(torch.randn(2, G.z_dim)))
        const = G.synthesis(ws, noise_mode="const")
        assert torch.equal(const, G.synthesis(ws, noise_mode="const"))  # deterministic
        assert torch.equal(const, G.synthesis(ws))  # the default
        r1, r2 = G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random")
        assert not torch.allclose(r1, r2)
        assert not torch.allclose(G.synthesis(ws, noise_mode="none"), const)
        w_avg = G.mean_w(2000)
        G.mapping.w_avg.copy_(w_avg)
        assert torch.allclose(G.mean_w(), w_avg) and torch.equal(G.mean_w(500, seed=3), G.mean_w(500, seed=3))
        z = torch.randn(4, G.z_dim)
        assert torch.allclose(G.mapping(z, truncation_psi=0.0), w_avg.expand(4, -1))
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="fixed")


# (d) GAN training -----------------------------------------------------------------------
def test_train_stylegan2_deterministic_and_finite():
    x = discs(32, 16)
    cfg = small()
    runs = [train_stylegan2(x, cfg, steps=4, batch_size=8, seed=s, r1_interval=2, pl_weight=2.0, pl_interval=2,
                            log_every=1) for s in (3, 3, 4)]
    (Ga, ha), (Gb, hb), (Gc, hc) = runs
    assert [r["step"] for r in ha] == [1, 2, 3, 4]
    for row in ha:
        assert all(math.isfinite(row[k]) for k in ("loss_G", "loss_D"))
    assert math.isfinite(ha[1]["r1"]) and math.isnan(ha[0]["r1"]) and math.isfinite(ha[3]["pl"])
    assert [(r["loss_G"], r["loss_D"]) for r in ha] == [(r["loss_G"], r["loss_D"]) for r in hb]
    for a, b in zip(Ga.state_dict().values(), Gb.state_dict().values()):
        assert torch.equal(a, b)
    assert [r["loss_D"] for r in ha] != [r["loss_D"] for r in hc]
    assert not Ga.training
    with pytest.raises(ValueError, match="expected images"):
        train_stylegan2(x[:, :, :8], cfg, steps=1)


def test_gan_learns_discs():
    """60 steps move G's samples measurably towards the data: the pixel-value distribution
    (mostly -1 background, some +1 disc) and the mean image; D separates better than at start."""
    x = discs(256, 16)
    cfg = small()
    G0, _ = train_stylegan2(x, cfg, steps=0, seed=0)  # the same initialisation, untrained
    lines = []
    G, hist = train_stylegan2(x, cfg, steps=60, batch_size=16, lr=0.002, seed=0, r1_gamma=0.1,
                              r1_interval=4, log=lines.append, log_every=20)
    assert len(lines) == len(hist) == 3 and lines[-1].startswith("step 60/60")  # a row of means per 20 steps
    assert [r["step"] for r in hist] == [20, 40, 60] and all(math.isfinite(r["r1"]) for r in hist)
    f0, f1 = sample(G0), sample(G)
    assert pixel_w1(f1, x) < 0.85 * pixel_w1(f0, x)
    err0, err1 = (np.abs(f.mean(0) - x.mean(0)).mean() for f in (f0, f1))
    assert err1 < 0.6 * err0
    assert hist[-1]["loss_D"] < hist[0]["loss_D"]


# (e) encoder -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def generator_and_samples():
    torch.manual_seed(0)
    G = Generator(small()).eval()
    G.mapping.w_avg.copy_(G.mean_w(2000))
    z = torch.randn(192, G.z_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        images = G(z, truncation_psi=0.7).numpy()
    return G, images[:160], images[160:]


def test_encoder_shapes():
    for gcfg in (small(36), StyleGAN2Config.tiny(resolution=96)):
        ecfg = EncoderConfig.tiny().matched_to(gcfg)
        E = Encoder(ecfg, torch.ones(gcfg.w_dim)).eval()
        assert sum(E.split) == gcfg.num_ws and E.split[:2] == (3, 4)
        with torch.no_grad():
            x = torch.zeros(2, 1, gcfg.resolution, gcfg.resolution)
            assert E(x).shape == (2, gcfg.num_ws, gcfg.w_dim)
            torch.testing.assert_close(E(x) - E.delta(x), torch.ones(2, gcfg.num_ws, gcfg.w_dim))
    with pytest.raises(ValueError, match="matched_to"):
        Encoder(EncoderConfig.tiny())


def test_train_encoder_reduces_reconstruction(generator_and_samples):
    G, train, test = generator_and_samples
    ecfg = EncoderConfig.tiny(width=8, channel_max=32)

    def recon_error(E):
        ws = torch.from_numpy(encode_images(E, test, batch_size=16))
        with torch.no_grad():
            return float((G.synthesis(ws) - torch.from_numpy(test)).square().mean())

    E0, _ = train_encoder(G, train, ecfg, steps=0, seed=0)
    torch.testing.assert_close(E0.w_avg, G.mean_w())
    flags = [p.requires_grad for p in G.parameters()]
    E, hist = train_encoder(G, train, ecfg, steps=60, batch_size=16, lr=1e-3, seed=0, log_every=10)
    assert [p.requires_grad for p in G.parameters()] == flags and all(p.grad is None for p in G.parameters())
    assert recon_error(E) < 0.6 * recon_error(E0)
    assert [r["step"] for r in hist] == [10, 20, 30, 40, 50, 60]  # means over 10 steps
    assert hist[-1]["l2"] < hist[0]["l2"]
    assert all(math.isnan(r["perceptual"]) for r in hist)
    # with a perceptual term (discriminator features): it is logged and finite
    fd = FeatureDistance(discriminator_features(Discriminator(G.config)))
    _, hist_p = train_encoder(G, train, ecfg, steps=3, batch_size=8, lr=1e-3, seed=0, perceptual=fd)
    assert all(math.isfinite(r["perceptual"]) and r["perceptual"] > 0 for r in hist_p)


# (f) checkpoints ----------------------------------------------------------------------------
def test_checkpoint_round_trips(tmp_path, generator_and_samples):
    G, train, test = generator_and_samples
    cfg = G.config
    save_generator(G, tmp_path / "G.pt")
    payload = torch.load(tmp_path / "G.pt", weights_only=True)
    assert payload["format"].startswith("cinerecon.stylegan2") and payload["config"] == cfg.to_dict()
    G2 = load_generator(tmp_path / "G.pt")
    assert not G2.training and G2.config == cfg
    ws = torch.randn(5, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(2))
    assert np.array_equal(generate_images(G, ws), generate_images(G2, ws))
    assert torch.equal(G2.mean_w(), G.mean_w())

    D = Discriminator(cfg).eval()
    save_discriminator(D, tmp_path / "D.pt")
    D2 = load_discriminator(tmp_path / "D.pt")
    x = torch.from_numpy(test[:4])
    with torch.no_grad():
        assert torch.equal(D(x), D2(x))

    E, _ = train_encoder(G, train, EncoderConfig.tiny(width=8, channel_max=32), steps=2, batch_size=4, seed=0)
    save_encoder(E, tmp_path / "E.pt")
    E2 = load_encoder(tmp_path / "E.pt")
    assert E2.config == E.config
    assert np.array_equal(encode_images(E, test), encode_images(E2, test))
    with pytest.raises(ValueError, match="not a cinerecon"):
        load_encoder(tmp_path / "G.pt")
    with pytest.raises(ValueError, match="not a cinerecon"):
        load_generator(tmp_path / "E.pt")


# (g) perceptual distances ----------------------------------------------------------------
@pytest.mark.parametrize("extractor", ["discriminator", "unet"])
def test_feature_distance(extractor):
    torch.manual_seed(0)
    net = Discriminator(small()) if extractor == "discriminator" else UNet(UNetConfig.tiny())
    feats = discriminator_features(net) if extractor == "discriminator" else unet_features(net)
    d = FeatureDistance(feats)
    assert isinstance(d, PerceptualDistance)
    x = torch.from_numpy(discs(4, 16, seed=1))
    y = torch.from_numpy(discs(4, 16, seed=2))
    same = d(x, x.clone())
    assert same.shape == (4,) and torch.allclose(same, torch.zeros(4), atol=1e-6)
    diff = d(x, y)
    assert diff.shape == (4,) and bool((diff > 1e-3).all())
    torch.testing.assert_close(d(x, y), d(y, x))
    # gradients reach the inputs, not the (copied, frozen) extractor; the original is untouched
    xg = x.clone().requires_grad_(True)
    d(xg, y).sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0
    assert all(p.grad is None for p in d.parameters())
    assert all(p.requires_grad for p in net.parameters())
    d.train()
    assert not d.extractor.training
    weighted = FeatureDistance(feats, weights=[0.0] * len(feats(x)))
    assert torch.equal(weighted(x, y), torch.zeros(4))
