"""DMCVR / DiffAE diffusion model: DDIM arithmetic, interpolation, morphology path, shapes,
checkpoints, determinism and a trained tiny model's inversion round trip."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from cinerecon.models import UNet, UNetConfig
from cinerecon.models.diffusion import (CHECKPOINT_FORMAT, EMA, DiffAE, Denoiser, DiffusionConfig, ddim_invert,
                                        ddim_sample, ddim_step, ddim_timesteps, interpolate_latents, lerp,
                                        linear_alphas_cumprod, load_diffae, morphology_latent, predict_x0,
                                        save_diffae, slerp, train_diffae)

# A small CPU config for the tests: 32 x 32, levels 32/16/8, attention at 8 x 8.
SMALL = dict(image_size=32, z_sem_dim=32)
# Round trip of a tiny model trained 200 steps (~15-30 s): plain DDIM needs ~100 steps for this threshold
# (achieved ~34 dB; 20 steps give ~18 dB), 20 steps with 2 fixed-point iterations ~37 dB.
ROUND_TRIP_PSNR_DB = 30.0


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Run this module's small networks on one intra-op thread (restored after): at these sizes a
    second thread gains little, and on a busy 2-core machine the spinning OpenMP workers slow
    training by an order of magnitude."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def small_config(**overrides) -> DiffusionConfig:
    return DiffusionConfig.tiny(**{**SMALL, **overrides})


def discs(n, size=32, seed=0):
    """Bright anti-aliased discs of random centre, radius and brightness on a dark background, in [-1, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] + 0.5
    out = np.empty((n, 1, size, size), np.float32)
    for i in range(n):
        cy, cx = rng.uniform(0.35 * size, 0.65 * size, 2)
        r = rng.uniform(0.15 * size, 0.3 * size)
        inside = np.clip(r - np.hypot(yy - cy, xx - cx) + 0.5, 0.0, 1.0)
        out[i, 0] = -0.8 + inside * rng.uniform(1.0, 1.8)
    return out


def randomise(model: torch.nn.Module, seed: int, std: float = 0.1) -> torch.nn.Module:
    """Overwrite every parameter with seeded noise: the zero-initialised output layers would
    otherwise make an untrained network's output identically zero and the tests trivial."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model


def psnr(a, b, data_range=2.0):
    mse = float(((a - b) ** 2).mean())
    return 10 * math.log10(data_range ** 2 / mse)


# (a) DDIM arithmetic -----------------------------------------------------------------------
def test_ddim_step_matches_hand_computation():
    x_t, eps = torch.tensor([0.5], dtype=torch.float64), torch.tensor([0.2], dtype=torch.float64)
    # pred_x0 = (0.5 - sqrt(0.19) * 0.2) / 0.9 = 0.458691134...; x' = 0.8 * pred_x0 + 0.6 * 0.2
    assert predict_x0(x_t, eps, 0.81).item() == pytest.approx(0.4586911347, abs=1e-9)
    assert ddim_step(x_t, eps, 0.81, 0.64).item() == pytest.approx(0.4869529078, abs=1e-9)
    # a_t = 1: pred_x0 is x_t itself; a_next = 1: the step returns pred_x0
    assert ddim_step(x_t, eps, 1.0, 0.64).item() == pytest.approx(0.8 * 0.5 + 0.6 * 0.2, abs=1e-12)
    assert ddim_step(x_t, eps, 0.81, 1.0).item() == pytest.approx(0.4586911347, abs=1e-9)


def test_ddim_step_clips_pred_x0_to_the_data_range_and_rederives_eps():
    x_t, eps = torch.tensor([2.0], dtype=torch.float64), torch.tensor([0.1], dtype=torch.float64)
    # pred_x0 = (2 - sqrt(0.75) * 0.1) / 0.5 = 3.83 -> clipped to 1; eps' = (2 - 0.5 * 1) / sqrt(0.75)
    expected = 0.8 * 1.0 + 0.6 * 1.5 / math.sqrt(0.75)
    assert ddim_step(x_t, eps, 0.25, 0.64, clip=True).item() == pytest.approx(expected, abs=1e-12)
    assert ddim_step(x_t, eps, 0.25, 0.64).item() == pytest.approx(0.8 * 3.8267949192 + 0.06, abs=1e-9)
    # inside the range, clipping changes nothing; a clean image (a_t = 1) is not clipped either
    x_in, e_in = torch.tensor([0.5], dtype=torch.float64), torch.tensor([0.2], dtype=torch.float64)
    assert ddim_step(x_in, e_in, 0.81, 0.64, clip=True).item() == pytest.approx(0.4869529078, abs=1e-9)
    assert ddim_step(x_t, eps, 1.0, 0.64, clip=True).item() == pytest.approx(0.8 * 2.0 + 0.6 * 0.1, abs=1e-12)


def test_clipped_decoding_stays_in_range_and_keeps_exact_round_trips():
    """An untrained denoiser predicts eps = 0 (its output convolution starts at zero): DDIM then
    maps x0 to sqrt(a) x0 and back exactly, clipped or not, but decodes a code that is not an
    inverted image (an interpolated or random x_T) to x_T / sqrt(a_T), ~160x out of range,
    unless pred_x0 is clipped."""
    model = DiffAE(small_config(mor_channels=0)).eval()
    x0 = torch.from_numpy(discs(3, seed=5))
    z_sem = model.encode_sem(x0).detach()
    back = model.decode(model.invert(x0, z_sem, steps=10), z_sem, steps=10)
    assert (back - x0).abs().max().item() < 1e-4
    noise = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert model.decode(noise, z_sem, steps=10, clip=False).abs().max().item() > 50
    assert model.decode(noise, z_sem, steps=10).abs().max().item() <= 1.0


def test_schedule_and_timesteps():
    ac = linear_alphas_cumprod()
    assert ac.shape == (1000,) and ac.dtype == torch.float64
    beta_1 = 1e-4 + (0.02 - 1e-4) / 999
    assert ac[0].item() == pytest.approx(1 - 1e-4) and ac[1].item() == pytest.approx((1 - 1e-4) * (1 - beta_1))
    assert 3e-5 < ac[-1].item() < 5e-5 and bool((ac[1:] < ac[:-1]).all())
    assert ddim_timesteps(20) == list(range(49, 1000, 50))
    assert ddim_timesteps(1000) == list(range(1000))
    assert ddim_timesteps(1) == [999]
    with pytest.raises(ValueError):
        ddim_timesteps(0)


def test_ddim_inversion_then_sampling_is_exact_for_x_independent_eps():
    ac = linear_alphas_cumprod()
    gen = torch.Generator().manual_seed(0)
    pattern = torch.randn(3, 1, 8, 8, generator=gen, dtype=torch.float64)
    x0 = torch.rand(3, 1, 8, 8, generator=gen, dtype=torch.float64) * 2 - 1
    calls = []

    def eps_fn(x, t):  # known function of t only, per sample
        assert t.shape == (x.shape[0],) and t.dtype == torch.long
        calls.append(int(t[0]))
        return torch.cos(t.double() / 300)[:, None, None, None] * pattern

    x_T = ddim_invert(eps_fn, x0, ac, 20)
    assert calls == ddim_timesteps(20)  # inversion evaluates eps at the target timestep
    calls.clear()
    back = ddim_sample(eps_fn, x_T, ac, 20)
    assert calls == ddim_timesteps(20)[::-1]
    assert (back - x0).abs().max().item() < 1e-10  # float64: exact up to rounding
    # float32 (the models' dtype): ~1e-6 relative to the 1/sqrt(alpha_bar_999) ~ 157 amplification
    back32 = ddim_sample(lambda x, t: eps_fn(x, t).float(), ddim_invert(lambda x, t: eps_fn(x, t).float(),
                                                                        x0.float(), ac, 20), ac, 20)
    assert (back32 - x0.float()).abs().max().item() < 1e-4

    # one step by hand: x_999 = sqrt(ab_999) x0 + sqrt(1 - ab_999) eps(999), and back
    a = ac[999].item()
    e = math.cos(999 / 300) * pattern
    one = ddim_invert(eps_fn, x0, ac, 1)
    assert torch.allclose(one, math.sqrt(a) * x0 + math.sqrt(1 - a) * e, atol=1e-12)
    assert torch.allclose(ddim_sample(eps_fn, one, ac, 1), (one - math.sqrt(1 - a) * e) / math.sqrt(a), atol=1e-12)


def test_clipped_inversion_then_sampling_is_exact_even_where_the_clip_acts():
    """An image at the range's edges (+-1) under a large x-independent eps: many pred_x0 leave
    [-1, 1] and are clipped, in both directions, yet the round trip is exact (with or without
    fixed-point refinement); inverting unclipped and decoding clipped is not."""
    ac = linear_alphas_cumprod()
    gen = torch.Generator().manual_seed(1)
    pattern = 3 * torch.randn(2, 1, 8, 8, generator=gen, dtype=torch.float64)
    x0 = torch.where(torch.rand(2, 1, 8, 8, generator=gen) < 0.5, -1.0, 1.0).double()
    clipped = []

    def eps_fn(x, t):
        return torch.sin(t.double() / 200)[:, None, None, None] * pattern

    def counting(x, t):
        a = float(ac[int(t[0])])
        clipped.append(int((predict_x0(x, eps_fn(x, t), a).abs() > 1).sum()))
        return eps_fn(x, t)

    for refine in (0, 2):
        x_T = ddim_invert(eps_fn, x0, ac, 10, refine=refine, clip=True)
        back = ddim_sample(counting, x_T, ac, 10, clip=True)
        assert (back - x0).abs().max().item() < 1e-9
    assert sum(clipped) > 50  # the clip did act
    mixed = ddim_sample(eps_fn, ddim_invert(eps_fn, x0, ac, 10), ac, 10, clip=True)
    assert (mixed - x0).abs().max().item() > 0.1


# (b) interpolation -------------------------------------------------------------------------
def test_slerp_unit_norm_endpoints_and_guard():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 1, 6, 6, generator=gen), torch.randn(5, 1, 6, 6, generator=gen)
    a = a / a.flatten(1).norm(dim=1)[:, None, None, None]
    b = b / b.flatten(1).norm(dim=1)[:, None, None, None]
    for t in np.linspace(0, 1, 11):
        norms = slerp(a, b, float(t)).flatten(1).norm(dim=1)
        assert torch.allclose(norms, torch.ones(5), atol=1e-6)
    assert torch.equal(slerp(a, b, 0.0), a) and torch.equal(slerp(a, b, 1.0), b)
    # per-sample t; the midpoint bisects the angle
    t = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    out = slerp(a, b, t)
    assert torch.equal(out[0], a[0]) and torch.equal(out[4], b[4])
    mid = out[2].flatten()
    assert torch.dot(mid, a[2].flatten()).item() == pytest.approx(torch.dot(mid, b[2].flatten()).item(), abs=1e-6)
    # theta ~ 0: identical / nearly parallel vectors fall back to lerp (finite, no 0/0)
    assert torch.equal(slerp(a, a.clone(), 0.3), lerp(a, a.clone(), 0.3))
    near = a + 1e-8 * b
    res = slerp(a, near, 0.5)
    assert torch.isfinite(res).all() and torch.allclose(res, lerp(a, near, 0.5), atol=1e-7)
    assert torch.isfinite(slerp(a, -a, 0.5)).all()  # antipodal: lerp, also finite
    # Gaussian codes of equal norm keep their norm (x_T interpolation)
    x, y = torch.randn(2, 4096, generator=gen, dtype=torch.float64)
    y = y * x.norm() / y.norm()
    assert slerp(x[None], y[None], 0.3).norm().item() == pytest.approx(x.norm().item(), rel=1e-9)


def test_interpolate_latents_lerps_codes_and_slerps_noise():
    gen = torch.Generator().manual_seed(2)
    a, b = [tuple(torch.randn(shape, generator=gen) for shape in ((3, 8), (3, 4, 2, 2), (3, 1, 4, 4)))
            for _ in range(2)]
    s, m, x = interpolate_latents(a, b, 0.3)
    assert torch.equal(s, lerp(a[0], b[0], 0.3)) and torch.equal(m, lerp(a[1], b[1], 0.3))
    assert torch.equal(x, slerp(a[2], b[2], 0.3))
    assert interpolate_latents((a[0], None, a[2]), (b[0], None, b[2]), 0.5)[1] is None
    with pytest.raises(ValueError):
        interpolate_latents((a[0], None, a[2]), b, 0.5)


def test_lerp_exact_endpoints_and_values():
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(4, 64, generator=gen), torch.randn(4, 64, generator=gen)
    assert torch.equal(lerp(a, b, 0.0), a) and torch.equal(lerp(a, b, 1.0), b)
    assert torch.allclose(lerp(a, b, 0.25), 0.75 * a + 0.25 * b)
    t = torch.tensor([0.0, 1.0, 0.5, 0.1])
    out = lerp(a, b, t)
    assert torch.equal(out[0], a[0]) and torch.equal(out[1], b[1])
    assert torch.allclose(out[3], 0.9 * a[3] + 0.1 * b[3])
    with pytest.raises(ValueError):
        lerp(a, b, torch.zeros(3))


# (c) morphology path -----------------------------------------------------------------------
def test_removing_z_mor_changes_only_the_conditioning_path():
    cfg_mor = small_config()
    cfg_dae = dataclasses.replace(cfg_mor, mor_channels=0)
    dmcvr = randomise(Denoiser(cfg_mor), seed=0).eval()
    diffae = Denoiser(cfg_dae).eval()
    mor_keys = {k for k in dmcvr.state_dict() if k.startswith("mor_proj.")}
    assert mor_keys == {"mor_proj.weight", "mor_proj.bias"}
    assert set(dmcvr.state_dict()) - mor_keys == set(diffae.state_dict())  # same network otherwise
    diffae.load_state_dict({k: v for k, v in dmcvr.state_dict().items() if k not in mor_keys})

    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 1, 32, 32, generator=gen)
    t = torch.tensor([0, 500, 999])
    z_sem = torch.randn(3, 32, generator=gen)
    z_mor = torch.randn(3, 64, 4, 4, generator=gen)  # tiny seg bottleneck at 32 / 8
    with torch.no_grad():
        ref = diffae(x, t, z_sem)
        assert ref.abs().max() > 1e-3
        assert not torch.allclose(dmcvr(x, t, z_sem, z_mor), ref)  # z_mor conditions the output
        dmcvr.mor_proj.weight.zero_()
        dmcvr.mor_proj.bias.zero_()
        assert torch.equal(dmcvr(x, t, z_sem, z_mor), ref)
    # a freshly built DMCVR model starts as its DiffAE (zero-initialised projection)
    assert torch.count_nonzero(Denoiser(cfg_mor).mor_proj.weight) == 0
    with pytest.raises(ValueError, match="z_mor is required"):
        dmcvr(x, t, z_sem)
    with pytest.raises(ValueError, match="no morphology"):
        diffae(x, t, z_sem, z_mor)


def test_z_mor_is_injected_at_the_matching_level():
    assert DiffusionConfig.paper().mor_level == 4  # 256 / 16 = 16 x 16, the U-Net's level 4
    assert DiffusionConfig.tiny().mor_level == 2  # tiny has 3 levels: deepest (z_mor upsampled 12 -> 24)
    assert small_config(channel_mult=(1, 2, 2, 2), attention_resolutions=(4,)).mor_level == 3
    assert small_config(mor_downsample=1).mor_level == 0
    for cfg in (small_config(mor_downsample=1), small_config(mor_downsample=2),
                small_config(channel_mult=(1, 2, 2, 2), attention_resolutions=(4,))):
        model = randomise(Denoiser(cfg), seed=3).eval()
        f = cfg.mor_downsample
        z_mor = torch.randn(2, 64, 32 // f, 32 // f)
        with torch.no_grad():
            out = model(torch.randn(2, 1, 32, 32), torch.tensor([10, 900]), torch.randn(2, 32), z_mor)
        assert out.shape == (2, 1, 32, 32) and torch.isfinite(out).all()


# (d) shapes, config, EMA -------------------------------------------------------------------
def test_shapes_at_crop_size_and_non_square_sizes():
    seg = UNet(UNetConfig.tiny())
    model = randomise(DiffAE(DiffusionConfig.tiny(), seg), seed=0)
    x = torch.rand(2, 1, 96, 96) * 2 - 1
    z_sem, z_mor, x_T = model.encode(x, steps=2)
    assert z_sem.shape == (2, 64) and z_mor.shape == (2, 64, 12, 12) and x_T.shape == x.shape
    assert model.decode(x_T, z_sem, z_mor, steps=2).shape == x.shape
    assert seg.training and all(p.requires_grad for p in seg.parameters())  # caller's model untouched

    small = randomise(DiffAE(small_config(), seg), seed=1)
    x = torch.rand(3, 1, 36, 52) * 2 - 1  # divisible by 4, not by the seg net's 8 (padded there)
    z_sem, z_mor, x_T = small.encode(x, steps=2)
    assert z_mor.shape == (3, 64, 5, 7) and x_T.shape == x.shape
    assert small.decode(x_T, z_sem, z_mor, steps=2).shape == x.shape
    with pytest.raises(ValueError, match="divisible"):
        small(torch.zeros(1, 1, 30, 32), torch.tensor([1]), torch.zeros(1, 32), torch.zeros(1, 64, 4, 4))
    assert torch.equal(morphology_latent(seg, x), z_mor)


def test_paper_config_builds_and_runs():
    cfg = DiffusionConfig.paper()
    assert (cfg.width, cfg.channel_mult, cfg.num_res_blocks, cfg.attention_resolutions, cfg.z_sem_dim) == \
        (128, (1, 1, 2, 2, 4, 4), 2, (16,), 512)
    assert cfg.multiple == 32 and cfg.attention_levels() == {4}
    model = Denoiser(cfg).eval()
    n_params = sum(p.numel() for p in model.parameters())
    assert 100e6 < n_params < 150e6
    with torch.no_grad():  # the 256-px network is convolutional: a 32 x 32 input runs through all 6 levels
        out = model(torch.zeros(1, 1, 32, 32), torch.tensor([5]), torch.zeros(1, 512), torch.zeros(1, 1024, 2, 2))
    assert out.shape == (1, 1, 32, 32)


def test_config_round_trip_and_validation():
    for cfg in (DiffusionConfig.paper(), DiffusionConfig.tiny(mor_channels=0), small_config()):
        assert DiffusionConfig.from_dict(cfg.to_dict()) == cfg
    d = DiffusionConfig.tiny().to_dict()
    assert DiffusionConfig.from_dict({**d, "channel_mult": [1, 2, 2]}) == DiffusionConfig.tiny()  # JSON lists
    with pytest.raises(ValueError, match="unknown"):
        DiffusionConfig.from_dict({**d, "widht": 3})
    with pytest.raises(ValueError, match="divisible"):
        DiffusionConfig.tiny(image_size=90)
    with pytest.raises(ValueError):
        DiffusionConfig.tiny(mor_downsample=6)
    assert DiffusionConfig.tiny().attention_resolutions == (24,) and DiffusionConfig.tiny().morphology
    assert not DiffusionConfig.tiny(mor_channels=0).morphology


def test_ema_update_and_copy_to():
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.9, warmup=False)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    for k, v in model.state_dict().items():
        assert torch.allclose(ema.shadow[k], 0.9 * start[k] + 0.1 * v)
    other = torch.nn.Linear(3, 2)
    ema.copy_to(other)
    assert all(torch.equal(other.state_dict()[k], ema.shadow[k]) for k in ema.shadow)
    warm = EMA(model, decay=0.9999)
    assert warm.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)


# (e) training, determinism, checkpoints, round trip -----------------------------------------
@pytest.fixture(scope="module")
def seg_net():
    torch.manual_seed(0)
    return UNet(UNetConfig.tiny()).eval()


def test_training_is_deterministic_and_validates(seg_net):
    x = discs(12, seed=3)
    cfg = small_config()
    kwargs = dict(steps=3, batch_size=4, lr=1e-3, log_every=1, seg_model=seg_net)
    m1, h1 = train_diffae(x, cfg, seed=7, **kwargs)
    m2, h2 = train_diffae(x, cfg, seed=7, **kwargs)
    m3, _ = train_diffae(x, cfg, seed=8, **kwargs)
    s1, s2, s3 = m1.state_dict(), m2.state_dict(), m3.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert not all(torch.equal(s1[k], s3[k]) for k in s1)
    assert [h["loss"] for h in h1] == [h["loss"] for h in h2] and [h["step"] for h in h1] == [1, 2, 3]
    assert not m1.training and m1.seg_model is seg_net
    with pytest.raises(ValueError, match="seg_model"):
        train_diffae(x, cfg, steps=1)
    with pytest.raises(ValueError, match="DiffAE"):
        train_diffae(x, small_config(mor_channels=0), steps=1, seg_model=seg_net)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        train_diffae(x * 3, small_config(mor_channels=0), steps=1)


def test_checkpoint_round_trip_is_exact(tmp_path, seg_net):
    model = randomise(DiffAE(small_config(), seg_net), seed=5).eval()
    path = tmp_path / "diffae.pt"
    save_diffae(model, path)
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == CHECKPOINT_FORMAT
    assert not any(k.startswith("seg") for k in payload["state_dict"])  # the seg net is not inside
    loaded = load_diffae(path, seg_model=seg_net)
    assert loaded.config == model.config and not loaded.training and loaded.seg_model is seg_net
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    x = torch.from_numpy(discs(2, seed=9))
    z = model.encode(x, steps=3)
    z_loaded = loaded.encode(x, steps=3)
    assert all(torch.equal(a, b) for a, b in zip(z, z_loaded))
    torch.save({"format": "something/else"}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a cinerecon DiffAE"):
        load_diffae(tmp_path / "bad.pt")


@pytest.fixture(scope="module")
def trained(seg_net):
    x = discs(64, seed=0)
    model, history = train_diffae(x, small_config(), steps=200, batch_size=8, lr=2e-3, seed=0,
                                  seg_model=seg_net, log_every=50)
    return model, history


def test_trained_tiny_model_inverts_and_decodes(trained):
    model, history = trained
    assert [h["step"] for h in history] == [50, 100, 150, 200]
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    x0 = torch.from_numpy(discs(8, seed=123))  # unseen discs
    z_sem, z_mor, x_T = model.encode(x0, steps=100)
    assert 0.8 < x_T.std().item() < 1.2  # close to unit-variance noise, not a copy of the image
    plain100 = psnr(model.decode(x_T, z_sem, z_mor, steps=100), x0)
    x_T20 = model.invert(x0, z_sem, z_mor, steps=20)
    rec20 = model.decode(x_T20, z_sem, z_mor, steps=20)
    plain20 = psnr(rec20, x0)
    refined20 = psnr(model.decode(model.invert(x0, z_sem, z_mor, steps=20, refine=2), z_sem, z_mor, steps=20), x0)
    print(f"DDIM inversion + decoding PSNR: 100 steps {plain100:.1f} dB, 20 steps {plain20:.1f} dB, "
          f"20 steps + 2 fixed-point iterations {refined20:.1f} dB (threshold {ROUND_TRIP_PSNR_DB} dB)")
    assert plain100 > ROUND_TRIP_PSNR_DB
    assert refined20 > ROUND_TRIP_PSNR_DB and refined20 > plain20 + 5
    unclipped = model.decode(model.invert(x0, z_sem, z_mor, steps=20, refine=2, clip=False), z_sem, z_mor,
                             steps=20, clip=False)
    assert psnr(unclipped, x0) > ROUND_TRIP_PSNR_DB  # the plain DDIM arithmetic round-trips as well
    # batching does not change the result (per-sample norms, no cross-sample ops)
    rec_loop = torch.cat([model.decode(x_T20[i:i + 1], z_sem[i:i + 1], z_mor[i:i + 1], steps=20) for i in range(2)])
    assert torch.allclose(rec_loop, rec20[:2], atol=1e-4)
    assert torch.allclose(model.decode(x_T20, z_sem, z_mor, steps=20, batch_size=3), rec20, atol=1e-4)
