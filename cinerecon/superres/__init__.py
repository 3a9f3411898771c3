"""Gemini-GAN (Savioli et al.): joint 3D super-resolution and segmentation of the SAX stack,
with V-AMA domain adaptation for another site's scanner.

- grid: the high-resolution grid over an aligned SAX crop;
- data: paired low-resolution stacks and high-resolution truth, as the networks see them;
- train: the training loops (resumable) of Gemini-GAN, its ablations and V-AMA;
- landmarks: V-AMA's rigid pre-alignment from six landmarks (Kabsch);
- files: file-level steps (train from files, reconstruct a subject, score against truth);
- stages: the shard stages the workflow runs.
The networks live in cinerecon.models.gemini_gan and cinerecon.models.vama.
"""
