"""V-AMA (Savioli et al., section 3.2): a variational adversarial mixture autoencoder that
maps another site's low-resolution SAX slices to the look of the training domain.

Two U-Net style VAEs on 2D slices in [-1, 1], each with a discriminator:

- the target network G_t encodes the concatenation I_i = (I_t, I_s) of a target slice and
  the rigidly aligned source slice into q(z_t | I_i) = N(mu_t, sigma_t^2) and reconstructs
  I_t^out = I_t + lambda_t I_t^* (eq. 8); loss (eq. 11-12): MSE + 0.5 KL + L1 + 0.05 GAN_t;
- the source network G_s, initialised from G_t (its first layer takes one channel, so that
  layer starts anew), encodes I_s into N(mu_s, sigma_s^2) and decodes the *mixed* posterior,
  the sum of the two independent Gaussians (eq. 15): mu_m = mu_t + mu_s,
  sigma_m^2 = sigma_t^2 + sigma_s^2, into I_s^out = I_s + lambda_s I_s^* (eq. 16); loss
  (eq. 14, 18): MSE + 0.5 KL(mixed) + L1 + 0.05 GAN_s, D_s judging I_s^out against target
  slices. G_t is frozen meanwhile.

Inference is deterministic (the posterior mean): both networks see the source slice, G_t
as (I_s, I_s) (section 3.2.3: "both ... take in input the source I_s").

Where the paper's equations disagree with themselves, the probabilistically consistent
reading is taken (docs/design-notes.md): eq. 15 writes log sigma_m = log sigma_t + log sigma_s
and samples with sigma_s + sigma_t, neither of which is the sum of Gaussians that its first
line (sigma_m^2 = sigma_t^2 + sigma_s^2) and the text state; the KL is the standard
0.5 (sigma^2 + mu^2 - 1 - log sigma^2) per latent element (eq. 11 writes log sigma).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import PlainConfig
from .unet import DoubleConv, Up


@dataclass(frozen=True)
class VamaConfig(PlainConfig):
    width: int = 16
    depth: int = 3
    latent_channels: int = 16
    disc_width: int = 16
    residual_weight: float = 1.0   # lambda_t = lambda_s (the paper: 1)
    kl_weight: float = 0.5
    gan_weight: float = 0.05

    @classmethod
    def tiny(cls, **overrides) -> "VamaConfig":
        return cls(**{"width": 16, "depth": 3, "latent_channels": 16, "disc_width": 16, **overrides})

    @classmethod
    def paper(cls, **overrides) -> "VamaConfig":
        return cls(**{"width": 64, "depth": 4, "latent_channels": 64, "disc_width": 64, **overrides})

    @property
    def multiple(self) -> int:
        return 2 ** self.depth


def mix_posteriors(mu_t, log_sigma_t, mu_s, log_sigma_s):
    """The sum of independent N(mu_t, sigma_t^2) and N(mu_s, sigma_s^2): (mu_m, log sigma_m)."""
    return mu_t + mu_s, 0.5 * torch.logaddexp(2 * log_sigma_t, 2 * log_sigma_s)


def kl_to_standard_normal(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) per latent element, averaged."""
    return 0.5 * (torch.exp(2 * log_sigma) + mu ** 2 - 1 - 2 * log_sigma).mean()


class VariationalUNet(nn.Module):
    """Encoder -> (mu, log sigma) at the bottleneck; decoder with skips -> the residual I^*."""

    def __init__(self, config: VamaConfig, in_channels: int):
        super().__init__()
        c = config
        ch = [c.width * 2 ** i for i in range(c.depth + 1)]
        self.config = c
        self.encoders = nn.ModuleList([DoubleConv(in_channels, ch[0], "batch")]
                                      + [DoubleConv(ch[i], ch[i + 1], "batch") for i in range(c.depth)])
        self.pool = nn.MaxPool2d(2)
        self.mu = nn.Conv2d(ch[-1], c.latent_channels, 1)
        self.log_sigma = nn.Conv2d(ch[-1], c.latent_channels, 1)
        self.from_latent = nn.Conv2d(c.latent_channels, ch[-1], 1)
        self.ups = nn.ModuleList([Up(ch[i + 1], ch[i], "batch", "transpose") for i in reversed(range(c.depth))])
        self.head = nn.Conv2d(ch[0], 1, 1)

    def encode(self, x: torch.Tensor):
        """(skips, mu, log sigma)."""
        skips = []
        for i, enc in enumerate(self.encoders):
            x = enc(x if i == 0 else self.pool(x))
            skips.append(x)
        return skips[:-1], self.mu(skips[-1]), self.log_sigma(skips[-1]).clamp(-10, 5)

    def decode(self, z: torch.Tensor, skips) -> torch.Tensor:
        x = self.from_latent(z)
        for up, skip in zip(self.ups, reversed(skips)):
            x = up(x, skip)
        return self.head(x)


def sample(mu: torch.Tensor, log_sigma: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Reparameterised z = mu + sigma * k, k ~ N(0, I)."""
    k = torch.randn(mu.shape, generator=generator).to(mu.device)
    return mu + torch.exp(log_sigma) * k


class Vama(nn.Module):
    """Both networks and both discriminators; `adapt` is the deterministic source -> target map."""

    def __init__(self, config: VamaConfig):
        super().__init__()
        self.config = config
        self.target = VariationalUNet(config, 2)
        self.source = VariationalUNet(config, 1)
        self.d_target = SliceDiscriminator(config.disc_width)
        self.d_source = SliceDiscriminator(config.disc_width)

    def target_pass(self, target: torch.Tensor, source: torch.Tensor, generator=None):
        """(I_t^out, mu_t, log sigma_t) for slices (B, 1, H, W); sampled z (training)."""
        skips, mu, log_sigma = self.target.encode(torch.cat([target, source], dim=1))
        z = sample(mu, log_sigma, generator) if generator is not None else mu
        return target + self.config.residual_weight * self.target.decode(z, skips), mu, log_sigma

    def source_pass(self, source: torch.Tensor, target_context: torch.Tensor, generator=None):
        """(I_s^out, mu_m, log sigma_m): G_t's posterior on (target_context, I_s) mixed with G_s's."""
        with torch.no_grad():
            _, mu_t, log_sigma_t = self.target.encode(torch.cat([target_context, source], dim=1))
        skips, mu_s, log_sigma_s = self.source.encode(source)
        mu, log_sigma = mix_posteriors(mu_t, log_sigma_t, mu_s, log_sigma_s)
        z = sample(mu, log_sigma, generator) if generator is not None else mu
        return source + self.config.residual_weight * self.source.decode(z, skips), mu, log_sigma

    @torch.no_grad()
    def adapt(self, source: torch.Tensor) -> torch.Tensor:
        """Source slices (B, 1, H, W) in the target domain's look: the posterior means."""
        return self.source_pass(source, source)[0].clamp(-1, 1)

    def init_source_from_target(self) -> None:
        """G_s starts from G_t's trained weights (section 3.2.3), except its one-channel first layer."""
        own = self.source.state_dict()
        for name, value in self.target.state_dict().items():
            if own[name].shape == value.shape:
                own[name] = value.clone()
        self.source.load_state_dict(own)


class SliceDiscriminator(nn.Module):
    """A patch-free slice discriminator: strided 3x3 convolutions, BN, LeakyReLU 0.2, pooled logit."""

    def __init__(self, width: int, layers: int = 4):
        super().__init__()
        mods, c_in = [], 1
        for i in range(layers):
            c_out = width * 2 ** i
            mods += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=i == 0)]
            mods += [nn.BatchNorm2d(c_out)] if i else []
            mods += [nn.LeakyReLU(0.2, inplace=True)]
            c_in = c_out
        self.features = nn.Sequential(*mods)
        self.head = nn.Linear(c_in, 1)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(-2, -1))).squeeze(-1)


def reconstruction_loss(out: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """MSE + L1 (eq. 11-12, 14, 18)."""
    return F.mse_loss(out, reference) + F.l1_loss(out, reference)


def adversarial(logit: torch.Tensor, real: bool) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logit, torch.full_like(logit, float(real)))
