"""Latent interpolation onto the fine grid: endpoints exact, lerp/slerp properties."""

import numpy as np
import torch

from cinerecon.baselines.grid import acquired_index, fine_positions
from cinerecon.latent.interpolate import fine_latents, lerp, slerp


def test_acquired_slices_keep_their_latents_exactly():
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(5, 7, 16, generator=g)
    for k in (1, 4, 10):
        fine = fine_latents(latents, k)
        assert fine.shape == (len(fine_positions(5, k)), 7, 16)
        for j in range(5):
            assert torch.equal(fine[acquired_index(j, k)], latents[j])
        # half-slabs repeat the end slices
        assert torch.equal(fine[0], latents[0]) and torch.equal(fine[-1], latents[-1])


def test_lerp_midpoint_and_slerp_keeps_unit_norm():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert torch.allclose(lerp(a, b, torch.tensor([0.5])), torch.tensor([[0.5, 0.5]]))
    for t in np.linspace(0, 1, 11):
        s = slerp(a, b, torch.tensor([t]))
        assert abs(float(s.norm()) - 1.0) < 1e-6
    assert torch.equal(slerp(a, b, torch.tensor([0.0])), a)
    assert torch.equal(slerp(a, b, torch.tensor([1.0])), b)
    # parallel vectors: no division by sin(0)
    p = slerp(a, 2 * a, torch.tensor([0.5]))
    assert torch.all(torch.isfinite(p)) and torch.allclose(p, 1.5 * a)


def test_fine_latents_with_slerp_between_slices():
    g = torch.Generator().manual_seed(1)
    latents = torch.nn.functional.normalize(torch.randn(3, 8, generator=g), dim=1)
    fine = fine_latents(latents, 4, combine=slerp)
    assert torch.allclose(fine.norm(dim=1), torch.ones(len(fine)), atol=1e-5)
