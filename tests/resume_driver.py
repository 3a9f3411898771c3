"""Train one small model of each kind with a TrainingState; optionally SIGKILL itself mid-run.

Run by tests/test_resume.py as a subprocess:
    python tests/resume_driver.py KIND OUT STATE [KILL_AT_STEP [SIGNAL]]
writes the finished model's state_dict to OUT (torch.save). With KILL_AT_STEP the process
sends itself SIGNAL (default SIGKILL: no clean-up of any kind runs, as after a node failure;
SIGTERM: what SLURM sends at a time limit) right after that step.
"""

import os
import signal
import sys

import numpy as np
import torch

from cinerecon.latent.dmcvr import ModelGrid, diffusion_config
from cinerecon.mae.data import MaeData, write_subject
from cinerecon.mae.model import MaeConfig, WholeHeartMAE
from cinerecon.mae.train import fit, pretraining
from cinerecon.models.diffusion import DiffusionConfig, train_diffae
from cinerecon.models.encoder import EncoderConfig, train_encoder
from cinerecon.models.resume import TrainingState
from cinerecon.models.slice_store import write_store
from cinerecon.models.stylegan2 import Generator, StyleGAN2Config, train_stylegan2
from cinerecon.models.train_seg import train_unet
from cinerecon.models.unet import UNet, UNetConfig
from cinerecon.models.gemini_gan import GeminiConfig
from cinerecon.models.vama import VamaConfig
from cinerecon.models.wplus_segnet import WPlusSegNetConfig, train_wplus_segnet
from cinerecon.superres.train import train_gemini, train_vama


class DyingState(TrainingState):
    """Saves every 3 steps; gets `signum` after step `kill_at` (between two saves)."""

    def __init__(self, path, kill_at, signum=signal.SIGKILL):
        super().__init__(path, "test", every_seconds=None, every_steps=3)
        self.kill_at, self.signum = kill_at, signum

    def maybe_save(self, step, build):
        if self.kill_at is not None and step == self.kill_at:
            os.kill(os.getpid(), self.signum)
        return super().maybe_save(step, build)


def discs(n, size, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.full((n, 1, size, size), -1.0, np.float32)
    labels = np.zeros((n, size, size), np.int64)
    for i in range(n):
        cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
        r = rng.uniform(size * 0.15, size * 0.3)
        disc = np.hypot(yy - cy, xx - cx) < r
        images[i, 0][disc] = 0.8
        labels[i][disc] = 1
        labels[i][np.hypot(yy - cy, xx - cx) < r / 2] = 3
    return images, labels


def train(kind, state, folder):
    torch.set_num_threads(1)
    images, labels = discs(24, 16)
    if kind == "unet":  # 24 slices, batch 8: 3 steps an epoch, 4 epochs; read from a store by 2 workers
        x = write_store(os.path.join(folder, "x.bin"), [images[:12], images[12:]], np.float32)
        y = write_store(os.path.join(folder, "y.bin"), [labels[:12], labels[12:]], np.uint8)
        model, _ = train_unet(x, y, images[:8], labels[:8], UNetConfig.tiny(), epochs=4, batch_size=8,
                              state=state, workers=2)
        return model
    if kind == "wplus":
        config = WPlusSegNetConfig(num_ws=4, w_dim=8, resolution=16)
        codes = np.random.default_rng(1).normal(size=(24, 4, 8)).astype(np.float32)
        model, _ = train_wplus_segnet(codes, labels, codes[:8], labels[:8], config, epochs=4, batch_size=8,
                                      state=state)
        return model
    small = StyleGAN2Config.tiny(resolution=16, channel_base=256, channel_max=32, z_dim=32, w_dim=32)
    if kind == "stylegan2":
        G, _ = train_stylegan2(images, small, steps=12, batch_size=4, r1_interval=4, pl_weight=2.0,
                               pl_interval=2, state=state)
        return G
    if kind == "encoder":
        with torch.random.fork_rng():
            torch.manual_seed(0)
            G = Generator(small)
        E, _ = train_encoder(G, images, EncoderConfig.tiny(width=8, channel_max=32), steps=12, batch_size=4,
                             state=state)
        return E
    if kind == "diffae":
        config = DiffusionConfig.tiny(image_size=16, z_sem_dim=16, width=8, channel_mult=(1, 2),
                                      norm_groups=4, mor_channels=0)
        model, _ = train_diffae(images, config, steps=12, batch_size=5, log_every=4, state=state)
        return model
    if kind == "dmcvr_fp16":  # z_mor from a U-Net on the crops, a 24 px model grid, fp16 loss scaling
        with torch.random.fork_rng():
            torch.manual_seed(0)
            seg = UNet(UNetConfig.tiny(depth=2)).eval()
        settings = {"preset": "tiny", "model": {"width": 8, "image_size": 24, "channel_mult": [1, 2],
                                                "norm_groups": 4, "z_sem_dim": 16}}
        config = diffusion_config(settings, 16, seg)
        grid = ModelGrid(16, config.image_size, config.multiple)
        model, _ = train_diffae(images, config, steps=12, batch_size=5, log_every=4, state=state, seg_model=seg,
                                precision="fp16", to_model=grid.to_model)
        return model
    if kind == "gemini_gan":  # both decoders, the discriminator, random crops and flips
        config = GeminiConfig.tiny(in_slices=4, z_factor=2, width=4, depth=2, disc_width=4)
        gen = torch.Generator().manual_seed(0)
        d = config.out_slices
        data = {"x": torch.from_numpy(images[:6, 0]).unsqueeze(1).repeat(1, 4, 1, 1),
                "image": torch.rand(6, d, 16, 16, generator=gen), "labels": torch.from_numpy(
                    labels[:6]).to(torch.uint8).unsqueeze(1).repeat(1, d, 1, 1),
                "mask": torch.ones(6, d, 16, 16, dtype=torch.bool)}
        G, _ = train_gemini(data, config, steps=12, batch_size=2, lr=1e-3, weight_decay=1e-6, crop=8, seed=0,
                            device="cpu", state=state, log_every=4)
        return G
    if kind == "vama":  # the target network for 6 steps, then the source network from it
        x = torch.from_numpy(images)
        model, _ = train_vama(x[:12], x[12:], x[:12], VamaConfig.tiny(width=4, depth=2, latent_channels=2,
                                                                      disc_width=4),
                              steps=(6, 6), batch_size=4, lr=2e-4, beta1=0.5, seed=0, device="cpu", state=state,
                              log_every=4)
        return model
    if kind == "mae":  # masked pre-training: the masking generator's state is part of the run's
        config = MaeConfig.tiny(pixels=16, n_frames=4, patch_t=2, dim=16, heads=2, decoder_dim=8, decoder_heads=2)
        paths = {}
        for i in range(4):
            paths[f"S{i}"] = os.path.join(folder, f"S{i}.npz")
            image = np.repeat(images[i * 6:(i + 1) * 6, :, None], 4, axis=2)  # (6, 1, 4, 16, 16) -> 9 planes
            write_subject(paths[f"S{i}"], {"image": np.concatenate([image[:, 0], image[:3, 0]]).astype(np.float16)},
                          np.zeros(5), "truth")
        arrays, loss = pretraining(MaeData(paths))
        model, _ = fit("pretrain", lambda: WholeHeartMAE(config), loss, arrays, steps=12, batch_size=2, lr=1e-3, weight_decay=0.05, seed=0, device="cpu", state=state,
                       log_every=4)
        return model
    raise SystemExit(f"unknown kind {kind}")


if __name__ == "__main__":
    kind, out, state_path = sys.argv[1:4]
    kill_at = int(sys.argv[4]) if len(sys.argv) > 4 else None
    signum = getattr(signal, sys.argv[5]) if len(sys.argv) > 5 else signal.SIGKILL
    state = DyingState(state_path, kill_at, signum)
    model = train(kind, state, os.path.dirname(out))
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, out)
    state.clear()
