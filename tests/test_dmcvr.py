"""DMCVR / DiffAE file-level steps: code interpolation, shared-batch decoding, written volumes."""

import numpy as np
import pytest
import torch

from cinerecon.baselines.grid import acquired_index
from cinerecon.io.nifti import load_nifti, save_nifti
from cinerecon.latent.deeprecon_files import subject_slices
from cinerecon.latent.dmcvr import (
    DiffusionShard,
    ModelGrid,
    concatenate,
    decode_codes,
    encode_slices,
    diffusion_config,
    fine_codes,
    heldout_codes,
    load_codes,
    morphology_shape,
    select,
    unique_codes,
)
from cinerecon.models.diffusion import DiffAE
from cinerecon.models.unet import UNet, UNetConfig

SETTINGS = {"preset": "tiny", "model": {"width": 8}, "ddim_steps": 2, "inference_batch_size": 16}


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def codes(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"z_sem": torch.randn(n, 8, generator=g), "z_mor": torch.randn(n, 3, 2, 2, generator=g),
            "x_T": torch.randn(n, 1, 8, 8, generator=g), "crop": (8, 8)}


def test_fine_codes_keep_the_acquired_slices_exactly():
    c, k = codes(), 4
    fine = fine_codes(c, k)
    for j in range(4):
        for name in ("z_sem", "z_mor", "x_T"):
            assert torch.equal(fine[name][acquired_index(j, k)], c[name][j])


def test_heldout_codes_lerp_semantics_and_slerp_noise():
    c = codes(5)
    mid = heldout_codes(c)
    assert torch.allclose(mid["z_sem"][0], (c["z_sem"][0] + c["z_sem"][2]) / 2)
    assert torch.allclose(mid["z_mor"][2], (c["z_mor"][2] + c["z_mor"][4]) / 2)
    # slerp between two noises of equal norm stays on their sphere (lerp would shrink it)
    a, b = c["x_T"][0], c["x_T"][2] * c["x_T"][0].norm() / c["x_T"][2].norm()
    unit = heldout_codes({"z_sem": c["z_sem"][:3], "x_T": torch.stack([a, a, b]), "crop": (8, 8)})
    assert torch.allclose(unit["x_T"][0].norm(), a.norm(), rtol=1e-5)
    assert unit["x_T"][0].norm() > ((a + b) / 2).norm()


def test_config_takes_z_mor_from_the_segmentation_bottleneck():
    seg = UNet(UNetConfig.tiny(depth=2))
    assert morphology_shape(seg, 32) == (32, 4)
    assert diffusion_config(SETTINGS, 32, seg).mor_channels == 32
    assert diffusion_config(SETTINGS, 32).mor_channels == 0  # DiffAE


def write_subject(folder, seed, n_slices=4):
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    labels = np.zeros((32, 32, n_slices, 3), np.uint8)
    for t, r in enumerate((7, 5, 6)):
        labels[..., t] = ((x - 16) ** 2 + (y - 16) ** 2 <= r**2)[..., None]
    image = (rng.normal(0, 0.1, labels.shape) + labels).astype(np.float32)
    affine = np.array([[1.5, 0, 0, -20], [0, 1.5, 0, 5], [0, 0, 8.0, 30], [0, 0, 0, 1]])
    folder.mkdir()
    save_nifti(folder / "sa.nii.gz", image, affine)
    save_nifti(folder / "label_sa.nii.gz", labels, affine, dtype=np.uint8)
    return subject_slices(folder.name, folder / "sa.nii.gz", folder / "label_sa.nii.gz")


def test_shard_decodes_subjects_together_as_it_would_alone(tmp_path):
    torch.manual_seed(0)
    seg = UNet(UNetConfig.tiny(depth=2)).eval()
    model = DiffAE(diffusion_config(SETTINGS, 32, seg), seg_model=seg).eval()
    subjects = {"A": write_subject(tmp_path / "A", 0), "B": write_subject(tmp_path / "B", 1, n_slices=5)}
    together = DiffusionShard(subjects, model, seg, SETTINGS, target_spacing_mm=2.0, device="cpu")
    alone = DiffusionShard({"B": subjects["B"]}, model, seg, SETTINGS, target_spacing_mm=2.0, device="cpu")
    for kind in ("volume", "heldout"):
        for i in range(2):
            np.testing.assert_allclose(together.result("B", "ES", kind)[i], alone.result("B", "ES", kind)[i],
                                       atol=1e-5)
    assert together.k == {"A": 4, "B": 4} and together.passes[0]["subjects"] == 2  # one pass for both
    images, labels = together.result("B", "ED", "volume")
    assert images.shape == ((5 - 1) * 4 + 1 + 2 * 2, 32, 32) and labels.dtype == np.uint8
    assert together.result("B", "ED", "heldout")[0].shape == (3, 32, 32)
    # a pass per subject gives the same slices
    single = DiffusionShard(subjects, model, seg, {**SETTINGS, "subjects_per_pass": 1}, 2.0, "cpu")
    np.testing.assert_allclose(single.result("B", "ED", "volume")[0], images, atol=1e-5)
    assert len(single.passes) == 1 and "A" not in single.results  # A's pass is not needed yet
    single.result("A", "ED", "volume")
    assert [p["subjects"] for p in single.passes] == [1, 1]

    codes_b = select(together.codes["B"], slice(0, 10))["z_sem"]
    out = {p: tmp_path / f"{p}.nii.gz" for p in ("ED", "ES", "image_ED", "image_ES")}
    out["record"] = tmp_path / "recon.json"
    record = together.write("B", subjects["B"], "dmcvr", out, tmp_path / "codes.npz")
    volume, fine, _ = load_nifti(out["image_ED"], "B")
    _, acquired, _ = load_nifti(tmp_path / "B/sa.nii.gz", "B")
    # fine slice j*k + pad lies exactly at acquired slice j
    for j in range(5):
        centre = fine @ [0, 0, acquired_index(j, 4), 1]
        np.testing.assert_allclose(centre, acquired @ [0, 0, j, 1], atol=1e-9)
    assert volume.shape == (32, 32, 21) and record["frames"] == {"ED": 0, "ES": 1}
    saved = load_codes(tmp_path / "codes.npz")
    assert saved["x_T"].shape == (2, 5, 1, 32, 32) and saved["frames"] == [0, 1]
    assert torch.equal(saved["z_sem"].reshape(10, -1), codes_b)
    assert "B" not in together.codes and ("ED", "volume") not in together.results["B"]  # written: freed
    rows = together.heldout("B", subjects["B"], "dmcvr")
    assert len(rows) == 2 * 3 and set(rows["slice"]) == {1, 2, 3}


def test_a_bad_subject_fails_alone_in_its_pass(tmp_path):
    torch.manual_seed(0)
    seg = UNet(UNetConfig.tiny(depth=2)).eval()
    model = DiffAE(diffusion_config(SETTINGS, 32, seg), seg_model=seg).eval()
    good = write_subject(tmp_path / "A", 0)
    bad = {k: v for k, v in write_subject(tmp_path / "X", 1).items() if k != "affine"}  # breaks its pass
    shard = DiffusionShard({"A": good, "X": bad}, model, seg, SETTINGS, 2.0, "cpu")
    assert shard.result("A", "ED", "volume")[0].shape[0] == (4 - 1) * 4 + 1 + 2 * 2
    with pytest.raises(KeyError):
        shard.result("X", "ED", "volume")


def test_equal_codes_are_decoded_once_and_copied():
    c = fine_codes(codes(4), 4)  # the end slabs repeat the end slices' codes
    first, inverse = unique_codes(c)
    assert len(c["z_sem"]) == 3 * 4 + 1 + 2 * 2 and len(first) == 3 * 4 + 1
    assert list(first) == sorted(first)
    assert all(torch.equal(select(c, first)[n][inverse], c[n]) for n in ("z_sem", "x_T"))
    seg = UNet(UNetConfig.tiny(depth=2)).eval()
    model = DiffAE(diffusion_config(SETTINGS, 8, seg), seg_model=seg).eval()
    c = encode_slices(model, np.random.default_rng(0).uniform(-1, 1, (3, 1, 8, 8)).astype(np.float32), 2, 4, "cpu")
    both = concatenate([c, select(c, torch.tensor([2, 0]))])  # slices 0, 1, 2, then 2 and 0 again
    decoded = decode_codes(model, both, 2, 4, "cpu")
    np.testing.assert_array_equal(decoded[3], decoded[2])
    np.testing.assert_array_equal(decoded[4], decoded[0])
    np.testing.assert_allclose(decoded[:3], decode_codes(model, c, 2, 4, "cpu"), atol=1e-6)


def test_config_pads_odd_crops_to_the_denoiser_multiple():
    seg = UNet(UNetConfig.tiny(depth=3))  # multiple 8: a 30 px slice is seen as 32 px, z_mor 4 x 4
    config = diffusion_config(SETTINGS, 30, seg)
    assert config.image_size == 32 and (config.mor_channels, config.mor_downsample) == (64, 8)
    model = DiffAE(config, seg_model=seg).eval()
    images = np.random.default_rng(0).uniform(-1, 1, (2, 1, 30, 30)).astype(np.float32)
    codes = encode_slices(model, images, 2, 2, "cpu")
    assert codes["x_T"].shape[-1] == 32 and decode_codes(model, codes, 2, 2, "cpu").shape == (2, 1, 30, 30)


def disc(size, centre, radius):
    yy, xx = np.mgrid[:size, :size] + 0.5  # pixel centres, in pixels of this grid
    return np.where(np.hypot(yy - centre[0] * size, xx - centre[1] * size) < radius * size, 1.0, -1.0)


def centroid(image):
    w = (np.asarray(image) + 1) / 2
    yy, xx = np.mgrid[:w.shape[0], :w.shape[1]] + 0.5
    return np.array([(w * yy).sum(), (w * xx).sum()]) / w.sum() / w.shape[0]  # fraction of the field


def test_the_model_grid_resamples_crops_over_the_same_field_of_view_and_back():
    """DMCVR's published 256 px on a 96 px crop: a disc keeps its place (fraction of the field of
    view) on the model's grid and back on the crop's; a linear ramp comes back in place."""
    grid = ModelGrid(crop=96, size=256, multiple=32)
    assert grid.resampled
    image = disc(96, (0.41, 0.57), 0.2)[None, None].astype(np.float32)
    up = grid.to_model(image)
    assert up.shape == (1, 1, 256, 256)
    assert np.allclose(centroid(up[0, 0].numpy()), centroid(image[0, 0]), atol=0.1 / 256)
    back = grid.to_crop(up).numpy()
    assert back.shape == image.shape
    assert np.allclose(centroid(back[0, 0]), centroid(image[0, 0]), atol=0.05 / 96)
    ramp = np.broadcast_to(np.linspace(-0.9, 0.9, 96, dtype=np.float32)[None, :], (96, 96))[None, None].copy()
    out = grid.to_crop(grid.to_model(ramp)).numpy()
    step = ramp[0, 0, 0, 1] - ramp[0, 0, 0, 0]
    # away from the border, off by under 2 % of one pixel's step: a shift of < 0.02 px
    assert np.abs(out - ramp)[..., 4:-4].max() < 0.02 * step


def test_the_model_grid_pads_when_the_model_is_the_crop_rounded_up():
    grid = ModelGrid(crop=30, size=32, multiple=8)
    assert not grid.resampled
    image = np.random.default_rng(0).uniform(-1, 1, (2, 1, 30, 30)).astype(np.float32)
    padded = grid.to_model(image)
    assert padded.shape[-1] == 32 and torch.equal(grid.to_crop(padded), torch.from_numpy(image))
    with pytest.raises(ValueError, match="30 x 30"):
        grid.to_model(image[..., :28, :28])


def test_the_paper_preset_works_at_256_px_and_the_segmentation_sees_the_crop_scale():
    seg = UNet(UNetConfig.tiny(depth=3))  # trained on 96 px crops: bottleneck 12 x 12
    config = diffusion_config({"preset": "paper", "model": {}}, 96, seg)
    assert config.image_size == 256 and config.seg_input_size == 96
    assert config.mor_downsample == 16 and config.mor_level == 4  # 256 / 12 -> the 16 x 16 level
    tiny = diffusion_config({"preset": "tiny", "model": {"width": 8, "image_size": 128}}, 96, seg)
    assert tiny.image_size == 128 and tiny.seg_input_size == 96
    assert diffusion_config(SETTINGS, 96, seg).seg_input_size == 0  # no resampling at the crop size


def test_decoded_slices_of_a_resampling_model_lie_on_the_crop_grid():
    seg = UNet(UNetConfig.tiny(depth=2))
    config = diffusion_config({"preset": "tiny", "model": {"width": 8, "image_size": 48}}, 32, seg)
    model = DiffAE(config, seg_model=seg).eval()
    images = np.stack([disc(32, (0.5, 0.5), 0.25)[None]] * 2).astype(np.float32)
    codes = encode_slices(model, images, 2, 2, "cpu")
    assert codes["x_T"].shape[-1] == 48 and codes["z_mor"].shape[-1] == 8  # the seg sees 32 px
    assert decode_codes(model, codes, 2, 2, "cpu").shape == (2, 1, 32, 32)
