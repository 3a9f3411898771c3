"""Gemini-GAN and V-AMA: shapes, the mixed posterior, the high-resolution grid's geometry,
the landmark alignment, scoring, tables, the second domain."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from cinerecon.geometry import apply_affine, crop_affine, world_to_voxel
from cinerecon.io.sheet import SheetError, parse_domain
from cinerecon.labels import LVC, LVM, RVC
from cinerecon.models.gemini_gan import GeminiConfig, GeminiDiscriminator, GeminiGenerator, fine_slices
from cinerecon.models.vama import Vama, VamaConfig, kl_to_standard_normal, mix_posteriors
from cinerecon.superres.data import sample_on_grid
from cinerecon.superres.files import score
from cinerecon.superres.grid import highres_grid
from cinerecon.superres.landmarks import kabsch, rigid_matrix, six_landmarks
from cinerecon.superres.tables import paper_table
from cinerecon.superres.train import train_gemini
from cinerecon.synth.cohort import add_source_domain, generate_subject, source_acquisition
from cinerecon.synth.scanner import AcquisitionConfig


@pytest.mark.parametrize("xy_factor", [1, 2])
def test_generator_maps_a_stack_to_thin_slices_on_the_finer_grid(xy_factor):
    config = GeminiConfig.tiny(in_slices=10, z_factor=5, xy_factor=xy_factor, width=4, disc_width=4)
    G, D = GeminiGenerator(config), GeminiDiscriminator(config)
    image, logits = G(torch.zeros(2, 10, 32, 24))
    assert config.out_slices == fine_slices(10, 5) == 9 * 5 + 1 + 4
    assert image.shape == (2, 50, 32 * xy_factor, 24 * xy_factor)
    assert logits.shape == (2, 4, 50, 32 * xy_factor, 24 * xy_factor)
    assert D(image, logits.softmax(1)).shape == (2,)
    seg_only = GeminiGenerator(GeminiConfig.tiny(in_slices=10, task="seg", width=4))
    assert seg_only(torch.zeros(1, 10, 16, 16))[0] is None
    with pytest.raises(ValueError, match="divisible"):
        G(torch.zeros(1, 10, 30, 24))


def test_mixed_posterior_is_the_sum_of_two_independent_gaussians():
    mu_t, mu_s = torch.tensor([1.0]), torch.tensor([2.0])
    log_t, log_s = torch.log(torch.tensor([3.0])), torch.log(torch.tensor([4.0]))
    mu, log_sigma = mix_posteriors(mu_t, log_t, mu_s, log_s)
    assert mu.item() == pytest.approx(3.0) and torch.exp(log_sigma).item() == pytest.approx(5.0)  # 3-4-5
    # sampling the two and adding them has that mean and spread
    gen = torch.Generator().manual_seed(0)
    draws = 1.0 + 3.0 * torch.randn(200_000, generator=gen) + 2.0 + 4.0 * torch.randn(200_000, generator=gen)
    assert draws.mean().item() == pytest.approx(3.0, abs=0.05) and draws.std().item() == pytest.approx(5.0, abs=0.05)
    # KL(N(3, 25) || N(0, 1)) = (25 + 9 - 1 - ln 25) / 2
    assert kl_to_standard_normal(mu, log_sigma).item() == pytest.approx((25 + 9 - 1 - math.log(25)) / 2)
    assert kl_to_standard_normal(torch.zeros(3), torch.zeros(3)).item() == 0.0


def test_vama_adaptation_is_deterministic_and_source_starts_from_target():
    torch.manual_seed(0)
    model = Vama(VamaConfig.tiny(width=4, latent_channels=2, disc_width=4)).eval()
    model.init_source_from_target()
    assert torch.equal(model.source.mu.weight, model.target.mu.weight)
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    assert torch.equal(model.adapt(x), model.adapt(x)) and model.adapt(x).shape == x.shape


@pytest.fixture(scope="module")
def fine_subject(tmp_path_factory):
    acq = AcquisitionConfig.from_dict({"n_frames": 6, "sax_matrix": [64, 64], "lax_matrix": [48, 48],
                                       "sr_xy_factor": 2, "sr_slice_mm": 2.5})
    return generate_subject("SR", 3, 0, tmp_path_factory.mktemp("sr"), acq)


def test_highres_grid_of_any_crop_lands_exactly_on_the_3d_truth(fine_subject):
    import nibabel as nib

    sa = nib.load(fine_subject["sa"])
    truth = nib.load(fine_subject["truth_sr_image_ED"])
    assert np.allclose(np.linalg.norm(truth.affine[:3, :3], axis=0), [1.8269 / 2, 1.8269 / 2, 2.5])
    for start in [(0, 0, 0), (7, 12, 0)]:  # the crop stage's integer offsets
        affine = crop_affine(sa.affine, start)
        grid_affine, shape = highres_grid(affine, (40, 40, sa.shape[2]), 2, 4)
        assert shape == (80, 80, (sa.shape[2] - 1) * 4 + 1 + 4)
        ijk = np.array([[0, 0, 0], [13, 57, 9], [79, 79, shape[2] - 1]])
        vox = world_to_voxel(truth.affine, apply_affine(grid_affine, ijk))
        assert np.allclose(vox, np.round(vox), atol=1e-6)  # a point's world position agrees
        # acquired slice j sits on fine slice 4 j + 2, pixel (i, j) between fine pixels 2i and 2i + 1
        centre = apply_affine(affine, np.array([[3.0, 5.0, 1.0]]))
        assert np.allclose(centre, apply_affine(grid_affine, np.array([[6.5, 10.5, 6.0]])))
    # resampling the truth onto a matching grid copies it voxel for voxel
    data = truth.get_fdata()
    copy = sample_on_grid(data, truth.affine, crop_affine(truth.affine, (3, 4, 5)), (10, 10, 10), order=1)
    assert np.array_equal(copy, data[3:13, 4:14, 5:15])


def test_kabsch_recovers_a_rigid_motion_and_landmarks_find_centroids():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(6, 3)) * 30
    angle = 0.4
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    moved = points @ rotation.T + [5.0, -3.0, 12.0]
    r, t = kabsch(points, moved)
    assert np.allclose(r, rotation) and np.allclose(t, [5.0, -3.0, 12.0])
    assert np.allclose(apply_affine(rigid_matrix(r, t), points), moved)
    labels = np.zeros((20, 20, 5), np.uint8)
    for z in range(1, 5):
        labels[4:7, 4:7, z] = LVM   # centroid (5, 5)
        labels[10:14, 8:10, z] = RVC  # centroid (11.5, 8.5)
    labels[4:7, 4:7, 0] = LVM      # no RV on slice 0: not a landmark slice
    marks = six_landmarks(labels, np.eye(4))
    assert np.allclose(marks, [[5, 5, 1], [11.5, 8.5, 1], [5, 5, 3], [11.5, 8.5, 3], [5, 5, 4], [11.5, 8.5, 4]])


def test_scores_of_a_perfect_and_an_empty_prediction():
    rng = np.random.default_rng(1)
    image = rng.uniform(-1, 1, (6, 16, 16)).astype(np.float32)
    labels = np.zeros((6, 16, 16), np.uint8)
    labels[1:5, 3:9, 3:9], labels[1:5, 5:7, 5:7], labels[1:5, 10:14, 3:9] = LVM, LVC, RVC
    mask = np.zeros(labels.shape, bool)
    mask[:, 2:15, 2:15] = True
    rows = pd.DataFrame(score("S", "m", "ED", image, labels, (image, labels, mask))).set_index("metric")["value"]
    assert rows[["dice_LVC", "dice_LVM", "dice_RVC", "ssim"]].tolist() == pytest.approx([1, 1, 1, 1])
    empty = pd.DataFrame(score("S", "m", "ED", None, np.zeros_like(labels), (image, labels, mask)))
    assert set(empty["metric"]) == {"dice_LVC", "dice_LVM", "dice_RVC"} and (empty["value"] == 0).all()


def test_paper_table_shape():
    rows = pd.DataFrame([{"subject": s, "method": m, "phase": p, "metric": k, "value": v}
                         for s, v in (("A", 0.8), ("B", 0.6)) for m in ("gemini_gan", "nn")
                         for p in ("ED", "ES") for k in ("dice_LVC", "psnr")])
    table = paper_table(rows, ["nn", "unet_seg", "gemini_gan"])
    assert list(table["method"]) == ["nn", "gemini_gan"]
    assert table.loc[0, "Dice LVC ED"] == "0.700 (0.100)" and table.loc[0, "SSIM ES"] == "n/a"
    assert list(table.columns[:4]) == ["method", "subjects", "Dice LVC ED", "Dice LVC ES"]


def test_gemini_training_lowers_its_loss_on_a_fixed_pair():
    config = GeminiConfig.tiny(in_slices=4, z_factor=2, width=4, disc_width=4, depth=2)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 4, 16, 16, generator=gen) * 2 - 1
    labels = (torch.rand(2, config.out_slices, 16, 16, generator=gen) * 4).to(torch.uint8)
    data = {"x": x, "image": torch.rand(2, config.out_slices, 16, 16, generator=gen) * 2 - 1, "labels": labels,
            "mask": torch.ones(2, config.out_slices, 16, 16, dtype=torch.bool)}
    _, history = train_gemini(data, config, steps=40, batch_size=2, lr=3e-3, weight_decay=1e-6, crop=None, seed=0,
                              device="cpu", log_every=10)
    assert history[-1]["ce"] < history[0]["ce"] and history[-1]["mse"] < history[0]["mse"]
    assert history[-1]["d"] > 0


def test_second_domain_subjects_follow_the_target_cohort():
    sheet = pd.DataFrame({"subject": ["SYN0000", "SYN0001"], "index": [0, 1], "split": ["train", "test"],
                          "has_labels": [True, False], "lax_labels": ["", "none"]}).set_index("subject", drop=False)
    out = add_source_domain(sheet, {"n_subjects": 2})
    assert list(out.index) == ["SYN0000", "SYN0001", "SYN0002", "SYN0003"]
    assert list(out["domain"]) == ["target", "target", "source", "source"]
    assert list(out.loc[["SYN0002", "SYN0003"], "split"]) == ["test", "test"] and not out["has_labels"].iloc[2:].any()
    acq = source_acquisition({"n_frames": 12}, {"acquisition": {"noise_sigma": 0.1}})
    assert acq["n_frames"] == 12 and acq["contrast"] == "external" and acq["noise_sigma"] == 0.1
    with pytest.raises(SheetError, match="unknown domain"):
        parse_domain(pd.DataFrame({"subject": ["a"], "domain": ["elsewhere"]}), "sheet.tsv")
    assert parse_domain(pd.DataFrame({"subject": ["a", "b"], "domain": ["", "Source"]}), "s").tolist() == \
        ["target", "source"]


def test_real_shaped_stacks_that_gemini_gan_cannot_take_are_refused_by_subject(fine_subject):
    from cinerecon.io.nifti import InputError
    from cinerecon.superres.data import load_stack, network_input
    from cinerecon.superres.files import predict

    with pytest.raises(InputError, match=r"subject S7: aligned SAX stack: 17 slices, the model takes at most 16"):
        network_input(np.zeros((17, 8, 8), np.float32), 16, "S7")
    stack = load_stack("SR", fine_subject["sa"], {"ED": 0}, 1, 4)
    G = GeminiGenerator(GeminiConfig.tiny(in_slices=16, z_factor=5, width=4, disc_width=4)).eval()
    with pytest.raises(InputError, match=r"subject SR: .*refines the stack by \(z 4, xy 1\), the model by \(z 5"):
        predict(G, stack)
    with pytest.raises(InputError, match=r"subject SR: .*frames \{'ES': 99\} outside the cine's 6 frames"):
        load_stack("SR", fine_subject["sa"], {"ED": 0, "ES": 99}, 1, 4)


def test_landmarks_need_three_slices_with_both_ventricles():
    from cinerecon.superres.landmarks import LandmarkError

    labels = np.zeros((10, 10, 4), np.uint8)
    labels[2:4, 2:4, :2] = LVM
    labels[6:8, 6:8, :] = RVC
    with pytest.raises(LandmarkError, match="2 slices hold both LV myocardium and RV; the landmarks need 3"):
        six_landmarks(labels, np.eye(4))


def test_centre_alignment_is_rigid_and_maps_centre_to_centre():
    from cinerecon.superres.data import Stack
    from cinerecon.superres.files import centre_alignment

    def stack(affine):
        return Stack("S", {"ED": np.zeros((5, 8, 6), np.float32)}, {"ED": 0}, affine, (0, 1), affine, (8, 6, 5))

    angle = 0.3
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    a, b = np.eye(4), np.eye(4)
    a[:3, :3], a[:3, 3] = np.diag([1.8, 1.8, 10.0]), [3, -4, 7]
    b[:3, :3], b[:3, 3] = rot @ np.diag([1.8, 1.8, 10.0]), [-20, 5, 1]
    t = centre_alignment(stack(a), stack(b))
    assert np.allclose(t[:3, :3] @ t[:3, :3].T, np.eye(3)) and np.isclose(np.linalg.det(t[:3, :3]), 1)
    centre = (np.array([8, 6, 5]) - 1) / 2
    assert np.allclose(apply_affine(t @ a, centre), apply_affine(b, centre))
