"""DeepRecon motion adaptation (Eq. 3): known answers for the latent arithmetic, and one tiny file-level run."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from cinerecon.io.nifti import InputError, load_nifti, save_nifti
from cinerecon.latent.deeprecon import InversionSettings, generate, invert_slices
from cinerecon.latent.motion import adapt_motion, lv_volume_curve, resample_slices
from cinerecon.latent.motion_files import OUTPUTS, adapt_subject_motion
from cinerecon.models.data import frames_to_slices, normalise_intensity
from cinerecon.models.encoder import Encoder, EncoderConfig
from cinerecon.models.stylegan2 import Generator, StyleGAN2Config
from cinerecon.models.unet import UNet, UNetConfig

SIZE = 32
NUM_WS, W_DIM = 4, 3


def codes(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---- Eq. 3 ------------------------------------------------------------------------------
def test_resample_is_exact_at_the_ends_and_a_copy_for_equal_counts():
    w = codes(5, 7, NUM_WS, W_DIM)
    for n in (1, 4, 7, 11):
        out = resample_slices(w, n)
        assert out.shape == (5, n, NUM_WS, W_DIM)
        assert torch.equal(out[:, 0], w[:, 0])
        if n > 1:
            assert torch.equal(out[:, -1], w[:, -1])
    assert torch.equal(resample_slices(w, 7), w)
    # lerp reproduces codes that vary linearly along the slices
    ramp = torch.arange(4.0)[None, :, None] * torch.tensor([1.0, -2.0])  # (1, 4, 2)
    assert torch.allclose(resample_slices(ramp, 7)[0, :, 0], torch.linspace(0, 3, 7), atol=1e-6)


def test_zero_target_motion_keeps_the_source_still():
    source = codes(6, NUM_WS, W_DIM, seed=1)
    still = codes(1, 9, NUM_WS, W_DIM, seed=2).expand(5, -1, -1, -1)
    adapted = adapt_motion(source, still)
    assert adapted.shape == (5, 6, NUM_WS, W_DIM)
    assert torch.equal(adapted, source[None].expand_as(adapted))


def test_equal_slice_counts_transfer_the_target_displacement():
    source, target = codes(6, NUM_WS, W_DIM, seed=1), codes(8, 6, NUM_WS, W_DIM, seed=2)
    adapted = adapt_motion(source, target)
    assert torch.equal(adapted[0], source)
    assert torch.allclose(adapted - adapted[:1], target - target[:1], atol=1e-6, rtol=0)
    # the closed form equals Eq. 3's running sum of frame-to-frame steps
    running = source + torch.cumsum(target[1:] - target[:-1], dim=0)
    assert torch.allclose(adapted[1:], running, atol=1e-5)
    assert torch.allclose(adapt_motion(source, target, 0.5) - source, 0.5 * (adapted - source), atol=1e-6)


def test_different_slice_counts_keep_frame_zero_and_resample_the_motion():
    source, target = codes(4, NUM_WS, W_DIM, seed=3), codes(5, 9, NUM_WS, W_DIM, seed=4)
    adapted = adapt_motion(source, target)
    assert adapted.shape == (5, 4, NUM_WS, W_DIM) and torch.equal(adapted[0], source)
    # end slices follow the target's end slices exactly
    assert torch.allclose(adapted[:, 0] - source[0], target[:, 0] - target[0, 0], atol=1e-6)
    assert torch.allclose(adapted[:, -1] - source[-1], target[:, -1] - target[0, -1], atol=1e-6)


def test_per_layer_strength_leaves_unweighted_layers_static():
    source, target = codes(6, NUM_WS, W_DIM, seed=5), codes(4, 6, NUM_WS, W_DIM, seed=6)
    adapted = adapt_motion(source, target, strength=[1.0, 0.0, 1.0, 0.0])
    full = adapt_motion(source, target)
    for layer in (1, 3):
        assert torch.equal(adapted[:, :, layer], source[None, :, layer].expand(4, -1, -1))
    for layer in (0, 2):
        assert torch.equal(adapted[:, :, layer], full[:, :, layer])
    with pytest.raises(ValueError, match="per-layer"):
        adapt_motion(source, target, strength=[1.0, 0.0])


def test_lv_volume_curve_of_a_disc_stack():
    spacing = (1.5, 1.5, 10.0)
    radii = [20.0, 16.0, 12.0]  # pixels, one per frame
    x, y = np.meshgrid(np.arange(64) - 31.5, np.arange(64) - 31.5, indexing="ij")
    labels = np.zeros((64, 64, 5, len(radii)), np.uint8)
    for f, r in enumerate(radii):
        labels[..., f][x ** 2 + y ** 2 <= r ** 2] = 1                  # LVC disc on every slice
        labels[..., f][(x ** 2 + y ** 2 > r ** 2) & (x ** 2 + y ** 2 <= (r + 3) ** 2)] = 2  # myocardium: not counted
    analytic = np.array([np.pi * r ** 2 * 1.5 * 1.5 * 10.0 * 5 / 1000.0 for r in radii])  # mL
    curve = lv_volume_curve(labels, spacing)
    assert curve.shape == (3,)
    assert np.allclose(curve, analytic, rtol=0.02)
    assert np.allclose(lv_volume_curve(labels, np.diag([*spacing, 1.0])), curve)


# ---- file level -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # restored below: other tests' tolerances assume the default
    torch.manual_seed(0)
    G = Generator(StyleGAN2Config.tiny(resolution=SIZE)).eval()
    E = Encoder(EncoderConfig.tiny().matched_to(G.config), w_avg=G.mean_w(256)).eval()
    yield G, E, UNet(UNetConfig.tiny()).eval()
    torch.set_num_threads(threads)


def beating_cine(n_slices, n_frames, r0, seed):
    """A bright disc shrinking and growing over the cycle, with noise; and its labels."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.arange(SIZE) - 15.5, np.arange(SIZE) - 15.5, indexing="ij")
    image = rng.normal(100, 10, (SIZE, SIZE, n_slices, n_frames)).astype(np.float32)
    labels = np.zeros(image.shape, np.uint8)
    for t in range(n_frames):
        r = r0 * (1 - 0.3 * np.sin(np.pi * t / n_frames))
        disc = x ** 2 + y ** 2 <= r ** 2
        image[disc, :, t] += 300
        labels[disc, :, t] = 1
    return image, labels


def test_adapt_subject_motion_writes_the_adapted_cine(models, tmp_path):
    G, E, seg = models
    affines = {"SRC": np.array([[1.8, 0, 0, -20.0], [0, 1.8, 0, 5.0], [0, 0, 10.0, 30.0], [0, 0, 0, 1]]),
               "TGT": np.array([[1.6, 0, 0, 0.0], [0, 1.6, 0, 0.0], [0, 0, 8.0, 0.0], [0, 0, 0, 1]])}
    shapes = {"SRC": (3, 6, 8.0), "TGT": (4, 6, 6.0)}  # slices, frames, disc radius (px)
    images, label_paths = {}, {}
    for i, (s, (z, t, r)) in enumerate(shapes.items()):
        image, labels = beating_cine(z, t, r, seed=i)
        images[s], label_paths[s] = tmp_path / f"{s}_sa.nii.gz", tmp_path / f"{s}_label_sa.nii.gz"
        save_nifti(images[s], image, affines[s], frame_interval_s=0.03)
        save_nifti(label_paths[s], labels, affines[s], dtype=np.uint8)
    settings = InversionSettings(steps=(0, 2), lr=0.05, batch_size=64)
    outputs = {k: tmp_path / "out" / name for k, name in zip(
        OUTPUTS, ("sa.nii.gz", "seg_sa.nii.gz", "curves.tsv", "adaptation.json", "motion_adaptation.png"))}
    record = adapt_subject_motion("SRC", "TGT", images, G, E, None, seg, settings, outputs,
                                  label_paths={"SRC": label_paths["SRC"]}, frame_stride=2)
    assert all(p.exists() for p in outputs.values())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in outputs.values())

    frames = [0, 2, 4]
    image, affine, header = load_nifti(outputs["image"])
    labels, label_affine, _ = load_nifti(outputs["labels"])
    assert image.shape == labels.shape == (SIZE, SIZE, 3, len(frames))
    assert labels.dtype == np.uint8
    assert np.allclose(affine, affines["SRC"]) and np.allclose(label_affine, affines["SRC"])
    assert np.isclose(header.get_zooms()[3], 0.06)  # the target's frame interval x stride

    # frame 0 is G(w_S(0)): the same batched inversion, generated on its own
    slices = np.concatenate([frames_to_slices(normalise_intensity(load_nifti(images[s])[0]), frames)
                             for s in ("SRC", "TGT")])[:, None]
    w = invert_slices(slices, G, E, None, (1.8, 1.8), settings)[2]
    assert np.allclose(image[..., 0], np.moveaxis(generate(G, w[:3])[:, 0], 0, -1), atol=1e-5)

    curves = pd.read_csv(outputs["curves"], sep="\t")
    assert list(curves["frame"]) == frames and np.allclose(curves["time_fraction"], [0, 1 / 3, 2 / 3])
    assert {"source_ml", "target_ml", "adapted_ml", "source_manual_ml"} <= set(curves.columns)
    assert "target_manual_ml" not in curves
    assert np.isclose(curves["adapted_ml"][0], curves["source_ml"][0])  # same codes at frame 0
    manual = load_nifti(label_paths["SRC"])[0][..., frames]
    assert np.allclose(curves["source_manual_ml"], lv_volume_curve(manual, affines["SRC"]), atol=1e-5)
    saved = json.loads(outputs["record"].read_text())
    assert saved["frames"] == frames and saved["n_slices"] == {"source": 3, "target": 4}
    assert set(saved["ef"]) == {"source", "target", "adapted", "source_manual"}
    assert saved["inversion_steps"] == 2 and saved["strength"] == 1.0 and record["source"] == "SRC"


def test_bad_input_names_the_subject_and_leaves_nothing(models, tmp_path):
    G, E, seg = models
    save_nifti(tmp_path / "a.nii.gz", np.zeros((SIZE, SIZE, 2, 3), np.float32), np.eye(4))
    save_nifti(tmp_path / "b.nii.gz", np.zeros((SIZE + 4, SIZE, 2, 3), np.float32), np.eye(4))
    outputs = {k: tmp_path / "out" / f"{k}.x" for k in OUTPUTS}
    settings = InversionSettings(steps=(0,))
    with pytest.raises(InputError, match="subject B: .*b.nii.gz.*in-plane size"):
        adapt_subject_motion("A", "B", {"A": tmp_path / "a.nii.gz", "B": tmp_path / "b.nii.gz"}, G, E, None, seg,
                             settings, outputs)
    with pytest.raises(InputError, match="subject C: .*missing"):
        adapt_subject_motion("A", "C", {"A": tmp_path / "a.nii.gz", "C": tmp_path / "c.nii.gz"}, G, E, None, seg,
                             settings, outputs)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_failure_after_the_first_write_removes_what_was_written(models, tmp_path, monkeypatch):
    G, E, seg = models

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("cinerecon.latent.motion_files.motion_adaptation_figure", broken)
    save_nifti(tmp_path / "a.nii.gz", np.zeros((SIZE, SIZE, 2, 3), np.float32), np.eye(4))
    outputs = {k: tmp_path / "out" / f"{k}.x" for k in OUTPUTS}
    outputs["image"] = outputs["labels"].with_name("image.nii.gz")
    outputs["labels"] = outputs["labels"].with_name("labels.nii.gz")
    with pytest.raises(RuntimeError, match="disk full"):
        adapt_subject_motion("A", "A", {"A": tmp_path / "a.nii.gz"}, G, E, None, seg, InversionSettings(steps=(0,)),
                             outputs)
    assert not any((tmp_path / "out").iterdir())
