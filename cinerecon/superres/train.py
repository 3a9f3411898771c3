"""Training loops of Gemini-GAN (and its ablations) and V-AMA, resumable (cinerecon.models.resume).

Batches come from a seeded plan (cinerecon.models.slice_store.BatchPlan) and the
augmentation from a generator whose state is saved, so a resumed run ends with the same
weights as an uninterrupted one on CPU.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
import torch.nn.functional as F

from cinerecon.models.gemini_gan import (
    GeminiConfig,
    GeminiDiscriminator,
    GeminiGenerator,
    LossWeights,
    discriminator_loss,
    generator_loss,
    one_hot,
)
from cinerecon.models.resume import TrainingState, restore, snapshot
from cinerecon.models.runtime import seeded
from cinerecon.models.slice_store import BatchPlan
from cinerecon.models.vama import Vama, VamaConfig, adversarial, kl_to_standard_normal, reconstruction_loss

log = logging.getLogger(__name__)


def augment(x, image, labels, mask, crop: int | None, xy_factor: int, gen: torch.Generator):
    """The paper's augmentation, per example: a random in-plane crop (`crop` acquired pixels,
    the same window on the high-resolution grid) and random horizontal and vertical flips."""
    out = [[], [], [], []]
    h, w = x.shape[-2:]
    for i in range(len(x)):
        parts = [x[i], image[i], labels[i], mask[i]]
        if crop and crop < min(h, w):
            top, left = (int(torch.randint(n - crop + 1, (1,), generator=gen)) for n in (h, w))
            parts = [p[..., top:top + crop, left:left + crop] if j == 0 else
                     p[..., xy_factor * top:xy_factor * (top + crop), xy_factor * left:xy_factor * (left + crop)]
                     for j, p in enumerate(parts)]
        flips = [d for d, flip in zip((-2, -1), torch.rand(2, generator=gen) < 0.5) if flip]
        if flips:
            parts = [p.flip(flips) for p in parts]
        for j, p in enumerate(parts):
            out[j].append(p)
    return [torch.stack(o) for o in out]


def train_gemini(data: dict, config: GeminiConfig, steps: int, batch_size: int, lr: float, weight_decay: float,
                 crop: int | None, seed: int, device, state: TrainingState | None = None,
                 deterministic: bool = True, weights: LossWeights = LossWeights(), log_every: int = 25):
    """data: {"x": (N, d, h, w), "image": (N, D, H, W), "labels": (N, D, H, W), "mask": (N, D, H, W)}
    tensors on the CPU. Returns (generator in eval mode, history)."""
    n = len(data["x"])
    history: list[dict] = []
    with seeded(seed, device, deterministic):
        G = GeminiGenerator(config).to(device)
        D = GeminiDiscriminator(config).to(device) if config.task == "joint" else None
        opt_g = torch.optim.Adam(G.parameters(), lr=lr, weight_decay=weight_decay)
        modules, optimizers = {"G": G}, {"G": opt_g}
        if D is not None:
            opt_d = torch.optim.Adam(D.parameters(), lr=lr, weight_decay=weight_decay)
            modules["D"], optimizers["D"] = D, opt_d
        gen = torch.Generator().manual_seed(seed)
        plan = BatchPlan(n, min(batch_size, n), seed)
        start, sums = 0, {}
        saved = state.load() if state is not None else None
        if saved is not None:
            extra = restore(saved, modules, optimizers, {"augment": gen})
            start, history, sums = saved["step"], extra["history"], extra["sums"]
        G.train()
        t0 = time.perf_counter()
        for step in range(start + 1, steps + 1):
            rows = plan.rows(step - 1)
            x, image, labels, mask = (t.to(device) for t in augment(
                data["x"][rows], data["image"][rows], data["labels"][rows], data["mask"][rows],
                crop, config.xy_factor, gen))
            labels = labels.long()
            fake_image, logits = G(x)
            fake_logit, d_loss = None, torch.zeros(())
            if D is not None:
                # outside the truth's field of view the discriminator sees the same filler in both
                probs = torch.where(mask[:, None], F.softmax(logits, 1), one_hot(labels, config.n_classes))
                fake_image = torch.where(mask, fake_image, image)
                real = D(image, one_hot(labels, config.n_classes))
                d_loss = discriminator_loss(real, D(fake_image.detach(), probs.detach()))
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                fake_logit = D(fake_image, probs)
            losses = generator_loss(config, fake_image, logits, image, labels, mask, fake_logit, weights)
            opt_g.zero_grad(set_to_none=True)
            losses["total"].backward()
            opt_g.step()
            for k, v in {**losses, "d": d_loss}.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            sums["count"] = sums.get("count", 0) + 1
            if step % log_every == 0 or step == steps:
                count = sums.pop("count")
                row = {"step": step, **{k: v / count for k, v in sums.items()}, "seconds": time.perf_counter() - t0}
                history.append(row)
                log.info("step %d/%d loss %.4f ce %.4f mse %.4f gan %.4f d %.4f (%.1f s)", step, steps, row["total"],
                         row["ce"], row["mse"], row["gan"], row["d"], row["seconds"])
                sums = {}
            if state is not None:
                state.maybe_save(step, lambda: snapshot(step, modules, optimizers, {"augment": gen},
                                                        history=history, sums=sums))
    G.eval()
    return G, history


def train_vama(target: torch.Tensor, source: torch.Tensor, context: torch.Tensor, config: VamaConfig,
               steps: tuple[int, int], batch_size: int, lr: float, beta1: float, seed: int, device,
               state: TrainingState | None = None, deterministic: bool = True, log_every: int = 25):
    """target: (N, 1, H, W) target-domain slices; source: (M, 1, H, W) source slices and
    context: (M, 1, H, W) the target slices they were rigidly aligned to (pair i <-> i).
    steps: (target network's, source network's). Returns (Vama in eval mode, history)."""
    history: list[dict] = []
    total = sum(steps)
    with seeded(seed, device, deterministic):
        model = Vama(config).to(device)
        opt = {name: torch.optim.Adam(getattr(model, name).parameters(), lr=lr, betas=(beta1, 0.999))
               for name in ("target", "source", "d_target", "d_source")}
        gen = torch.Generator().manual_seed(seed)
        pairs, targets = BatchPlan(len(source), min(batch_size, len(source)), seed), \
            BatchPlan(len(target), min(batch_size, len(target)), seed + 1)
        start, sums = 0, {}
        saved = state.load() if state is not None else None
        if saved is not None:
            extra = restore(saved, {"vama": model}, opt, {"noise": gen})
            start, history, sums = saved["step"], extra["history"], extra["sums"]
        model.train()
        t0 = time.perf_counter()
        for step in range(start + 1, total + 1):
            first = step <= steps[0]
            if step == steps[0] + 1:
                model.init_source_from_target()
            rows, trows = pairs.rows(step - 1), targets.rows(step - 1)
            s, c = source[rows].to(device), context[rows].to(device)
            t = target[trows].to(device)
            if first:  # eq. 12: the target network on (I_t, I_s)
                out, mu, log_sigma = model.target_pass(c, s, gen)
                reference, real, disc, gen_opt = c, c, model.d_target, opt["target"]
            else:      # eq. 18: the source network with the mixed posterior
                model.target.eval()
                out, mu, log_sigma = model.source_pass(s, c, gen)
                reference, real, disc, gen_opt = s, t, model.d_source, opt["source"]
            d_opt = opt["d_target" if first else "d_source"]
            d_loss = adversarial(disc(real), True) + adversarial(disc(out.detach()), False)
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
            recon, kl, gan = reconstruction_loss(out, reference), kl_to_standard_normal(mu, log_sigma), \
                adversarial(disc(out), True)
            loss = recon + config.kl_weight * kl + config.gan_weight * gan
            gen_opt.zero_grad(set_to_none=True)
            loss.backward()
            gen_opt.step()
            for k, v in {"loss": loss, "recon": recon, "kl": kl, "gan": gan, "d": d_loss}.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            sums["count"] = sums.get("count", 0) + 1
            if step % log_every == 0 or step in (steps[0], total):
                count = sums.pop("count")
                row = {"step": step, "network": "target" if first else "source",
                       **{k: v / count for k, v in sums.items()}, "seconds": time.perf_counter() - t0}
                history.append(row)
                log.info("V-AMA %s step %d/%d loss %.4f kl %.4f gan %.4f d %.4f", row["network"], step, total,
                         row["loss"], row["kl"], row["gan"], row["d"])
                sums = {}
            if state is not None:
                state.maybe_save(step, lambda: snapshot(step, {"vama": model}, opt, {"noise": gen},
                                                        history=history, sums=sums))
    model.eval()
    return model, history


def stack_tensors(items: list[dict], keys=("x", "image", "labels", "mask")) -> dict:
    """[{key: array}] -> {key: tensor (N, ...)} (labels uint8, mask bool)."""
    out = {}
    for k in keys:
        arr = np.stack([it[k] for it in items])
        out[k] = torch.from_numpy(arr)
    return out
