"""DeepRecon latent steps: losses, batched inversion, volume geometry (tiny models, CPU)."""

import numpy as np
import pytest
import torch

from cinerecon.baselines.grid import acquired_index
from cinerecon.io.nifti import InputError, load_nifti, save_nifti
from cinerecon.latent.deeprecon import InversionSettings, generate, invert_batch, invert_slices, local_ncc, roi_mask
from cinerecon.latent.deeprecon_files import (load_latents, reconstruct_latent_subject, save_latents,
                                              train_encoder_files, train_generator_files)
from cinerecon.latent.names import deeprecon_variant
from cinerecon.latent.pretraining import subject_cine_slices
from cinerecon.models.encoder import Encoder, EncoderConfig, load_encoder
from cinerecon.models.model_grid import resample_fov
from cinerecon.models.stylegan2 import Generator, StyleGAN2Config, load_generator
from cinerecon.models.train_seg import load_checkpoint, save_checkpoint
from cinerecon.models.unet import UNet, UNetConfig

SIZE = 32


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    G = Generator(StyleGAN2Config.tiny(resolution=SIZE)).eval()
    E = Encoder(EncoderConfig.tiny().matched_to(G.config), w_avg=G.mean_w(256)).eval()
    return G, E


def test_variant_names():
    assert [deeprecon_variant(n) for n in (0, 1000, 10000, 250)] == [
        "deeprecon_no", "deeprecon_1k", "deeprecon_10k", "deeprecon_250"]


def test_local_ncc_and_roi():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, SIZE, SIZE, generator=g)
    assert torch.allclose(local_ncc(x, x), torch.ones(3), atol=1e-3)
    assert torch.allclose(local_ncc(x, 2 * x + 1), torch.ones(3), atol=1e-3)  # intensity-invariant
    y = torch.randn(3, 1, SIZE, SIZE, generator=g)
    assert local_ncc(x, y).abs().max() < 0.2
    roi = roi_mask((SIZE, SIZE), (2.0, 2.0), 20.0)
    assert roi[0, 0, SIZE // 2, SIZE // 2] > 0.99 and roi[0, 0, 0, 0] < 0.01


def test_inversion_improves_reconstruction_with_steps(models):
    G, E = models
    with torch.no_grad():  # targets G can represent: images of other codes
        target_ws = G.mean_w(64)[None, None] + 0.8 * torch.randn(4, G.num_ws, G.w_dim,
                                                                 generator=torch.Generator().manual_seed(3))
        x = G.synthesis(target_ws, noise_mode="const")
    settings = InversionSettings(steps=(0, 10, 60), lr=0.05, lambda_domain=0.0)
    history = []
    codes = invert_batch(x, G, E, None, roi_mask((SIZE, SIZE), (2.0, 2.0), 40.0), settings, history)
    assert set(codes) == {0, 10, 60} and codes[60].shape == (4, G.num_ws, G.w_dim)
    with torch.no_grad():
        errors = {n: float(((G.synthesis(w, noise_mode="const") - x) ** 2).mean()) for n, w in codes.items()}
    assert errors[60] < errors[10] < errors[0]
    losses = [h["loss"] for h in history]
    assert losses[-1] < losses[0]
    # independent per sample: inverting one slice alone gives the same codes
    alone = invert_batch(x[:1], G, E, None, roi_mask((SIZE, SIZE), (2.0, 2.0), 40.0), settings)
    assert torch.allclose(alone[60], codes[60][:1], atol=1e-3)  # batched conv rounding only


def rebuild_random_subject(G, tmp_path, crop: int, n_slices: int, affine: np.ndarray):
    """reconstruct_latent_subject on random ED/ES codes of a (crop, crop, n_slices) stack:
    (W+ codes (2, n_slices, num_ws, w_dim), outputs, record)."""
    save_nifti(tmp_path / "sa.nii.gz", np.zeros((crop, crop, n_slices, 3), np.int16), affine)
    torch.manual_seed(1)
    wplus = G.mean_w(64)[None, None, None] + torch.randn(2, n_slices, G.num_ws, G.w_dim)
    save_latents(tmp_path / "w.npz", wplus.reshape(-1, G.num_ws, G.w_dim).numpy(), [0, 2], n_slices)
    assert load_latents(tmp_path / "w.npz")["wplus"].shape == (2, n_slices, G.num_ws, G.w_dim)
    save_checkpoint(UNet(UNetConfig.tiny()), UNetConfig.tiny(), tmp_path / "seg.pt")
    out = {p: tmp_path / f"{p}.nii.gz" for p in ("ED", "ES", "image_ED", "image_ES")}
    record = reconstruct_latent_subject("S1", tmp_path / "w.npz", tmp_path / "sa.nii.gz", G,
                                        load_checkpoint(tmp_path / "seg.pt"), 2.0, out, tmp_path / "r.json",
                                        "cpu", "deeprecon_no")
    return wplus, out, record


def test_generated_volume_puts_acquired_slices_on_their_planes(models, tmp_path):
    G, _ = models
    n_slices, k = 4, 5
    affine = np.array([[1.8, 0, 0, -20.0], [0, 1.8, 0, 5.0], [0, 0, 10.0, 30.0], [0, 0, 0, 1]])
    wplus, out, record = rebuild_random_subject(G, tmp_path, SIZE, n_slices, affine)
    assert record["k"] == k
    image, fine, _ = load_nifti(out["image_ED"])
    labels, label_affine, _ = load_nifti(out["ED"])
    assert image.shape == (SIZE, SIZE, (n_slices - 1) * k + 1 + 2 * (k // 2)) == labels.shape
    assert np.allclose(fine, label_affine)
    with torch.no_grad():
        direct = G.synthesis(wplus[0], noise_mode="const").clamp(-1, 1).numpy()[:, 0]
    for j in range(n_slices):
        m = acquired_index(j, k)
        # same world position as acquired slice j, and exactly G(w_j) there
        assert np.allclose(fine @ [0, 0, m, 1], affine @ [0, 0, j, 1])
        assert np.allclose(image[:, :, m], direct[j], atol=1e-5)


# ---- a generator on a coarser grid than the crops (deeprecon.image_size) -----------------
CROP = 48  # crops of 48 px for the 32 px G: the same field of view in 1.5x coarser pixels


def test_crops_are_inverted_on_the_generators_grid_and_generated_back_on_theirs(models):
    G, E = models
    torch.manual_seed(2)
    ws = G.mean_w(64)[None, None] + 0.5 * torch.randn(3, G.num_ws, G.w_dim)
    with torch.no_grad():
        on_g = G.synthesis(ws, noise_mode="const")
        crops = resample_fov(on_g, CROP).clamp(-1, 1).numpy()
        expected_start = E(resample_fov(torch.from_numpy(crops), SIZE).clamp(-1, 1))
    codes = invert_slices(crops, G, E, None, (1.8, 1.8), InversionSettings(steps=(0,)))
    assert np.allclose(codes[0], expected_start.numpy(), atol=1e-6)  # E saw the crops on G's grid
    out = generate(G, ws.numpy(), crop=CROP)
    assert out.shape == (3, 1, CROP, CROP)
    assert np.allclose(out, resample_fov(on_g, CROP).clamp(-1, 1).numpy(), atol=1e-6)
    assert np.allclose(generate(G, ws.numpy()), on_g.clamp(-1, 1).numpy(), atol=1e-6)  # no crop: G's grid
    assert generate(G, np.zeros((0, G.num_ws, G.w_dim)), crop=CROP).shape == (0, 1, CROP, CROP)


def test_a_coarser_generator_rebuilds_volumes_on_the_crops_grid(models, tmp_path):
    G, _ = models
    n_slices, k = 3, 5
    affine = np.array([[1.2, 0, 0, -20.0], [0, 1.2, 0, 5.0], [0, 0, 10.0, 30.0], [0, 0, 0, 1]])
    wplus, out, record = rebuild_random_subject(G, tmp_path, CROP, n_slices, affine)
    assert record["k"] == k
    image, fine, _ = load_nifti(out["image_ES"])
    assert image.shape[:2] == (CROP, CROP) and load_nifti(out["ES"])[0].shape == image.shape
    assert np.allclose(fine[:3, :2], affine[:3, :2])  # the crop's pixels, not G's
    with torch.no_grad():
        direct = resample_fov(G.synthesis(wplus[1], noise_mode="const"), CROP).clamp(-1, 1).numpy()[:, 0]
    for j in range(n_slices):
        assert np.allclose(image[:, :, acquired_index(j, k)], direct[j], atol=1e-5)


def test_g_and_e_train_on_the_image_size_over_the_crops_field_of_view(tmp_path):
    """deeprecon.image_size 16 on 24 px crops: G and E are 16 px models, trained on the crops
    resampled over the same field of view (a bright left half stays the left half)."""
    image = np.zeros((24, 24, 2, 4), np.float32)
    image[:12] = 100.0
    paths = {}
    for s in ("A", "B"):
        save_nifti(tmp_path / f"{s}.nii.gz", image, np.diag([1.5, 1.5, 8.0, 1.0]))
        paths[s] = tmp_path / f"{s}.nii.gz"
    slices = subject_cine_slices("A", paths["A"], frame_stride=2, size=16)
    assert slices.shape == (4, 1, 16, 16)
    assert np.allclose(slices[:, 0, :7], 1.0) and np.allclose(slices[:, 0, 9:], -1.0)
    settings = {"preset": "tiny", "image_size": 16, "frame_stride": 2, "gan_steps": 2, "gan_lr": 0.002,
                "encoder_steps": 2, "encoder_lr": 0.001, "batch_size": 4, "seed": 0}
    g_out = {"generator": tmp_path / "G.pt", "history": tmp_path / "g.tsv", "samples": tmp_path / "g.png"}
    train_generator_files(paths, settings, g_out, "cpu")
    G = load_generator(g_out["generator"], "cpu")
    assert G.resolution == 16
    save_checkpoint(UNet(UNetConfig.tiny()), UNetConfig.tiny(), tmp_path / "seg.pt")
    e_out = {"encoder": tmp_path / "E.pt", "history": tmp_path / "e.tsv"}
    train_encoder_files(g_out["generator"], paths, tmp_path / "seg.pt", settings, e_out, "cpu")
    assert load_encoder(e_out["encoder"], "cpu").config.resolution == 16
    with pytest.raises(ValueError, match="square SAX crops"):
        save_nifti(tmp_path / "C.nii.gz", image[:, :20], np.eye(4))
        train_generator_files({"C": tmp_path / "C.nii.gz"}, settings, g_out, "cpu")
    # a subject of another crop size is refused, not silently resampled
    save_nifti(tmp_path / "D.nii.gz", image[:20, :20], np.eye(4))
    with pytest.raises(InputError, match="subject D: .*D.nii.gz.*20x20.*24 x 24"):
        train_generator_files({**paths, "D": tmp_path / "D.nii.gz"}, settings, g_out, "cpu")
