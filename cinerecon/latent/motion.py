"""DeepRecon motion adaptation (Chang et al., MICCAI 2022, Eq. 3): a target's motion on a source's heart.

    w_S(i+1) = w_S(0) + sum_{n=0..i} R_S (w_T(n+1) - w_T(n))

R_S resamples the target's slice axis to the source's slice count (hearts differ in
size, so in slice count). Here R_S = strength * resample: `resample_slices` is linear,
so it commutes with the frame differences, and the sum telescopes to
R_S(w_T(i)) - R_S(w_T(0)). That closed form is what `adapt_motion` computes: the same
numbers as the running sum, without accumulating rounding over the cycle.

`strength` is 1 in the paper. It may also be a vector with one weight per W+ layer
(num_ws), so the motion can be restricted to some style layers (e.g. the coarse ones,
which carry shape, leaving texture layers at the source's values).
"""

from __future__ import annotations

import numpy as np
import torch

from cinerecon.labels import LVC
from cinerecon.latent.interpolate import lerp
from cinerecon.phenotypes import volume_curve_ml


def resample_slices(codes, n_slices: int) -> torch.Tensor:
    """(F, Z_t, ...) -> (F, n_slices, ...) by lerp along the slice axis at evenly spaced positions.

    First and last slices map onto first and last (base to apex, whatever the count);
    exact at those ends and a copy when the counts already match.
    """
    codes = torch.as_tensor(codes)
    if codes.dim() < 2 or codes.shape[1] < 1 or n_slices < 1:
        raise ValueError(f"need codes (F, Z, ...) with Z >= 1 and n_slices >= 1, got {tuple(codes.shape)}, {n_slices}")
    n_in = codes.shape[1]
    if n_in == n_slices:
        return codes.clone()
    positions = np.linspace(0.0, n_in - 1, n_slices)  # numpy: the last position is exactly n_in - 1
    lower = np.minimum(np.floor(positions).astype(int), n_in - 1)
    upper = np.minimum(lower + 1, n_in - 1)
    # t = 0 at integer positions gives (1 - 0) a + 0 b = a exactly
    t = torch.as_tensor(positions - lower, dtype=codes.dtype)
    a, b = codes[:, lower].movedim(1, 0), codes[:, upper].movedim(1, 0)   # (n_slices, F, ...)
    return lerp(a, b, t).movedim(0, 1)


def _layer_weights(strength, codes: torch.Tensor) -> torch.Tensor:
    """R_S's scale, shaped to broadcast over (F, Z, num_ws, w_dim): a scalar or one weight per layer."""
    weight = torch.as_tensor(strength, dtype=codes.dtype)
    if weight.dim() == 0:
        return weight
    if weight.dim() != 1 or codes.dim() < 3 or len(weight) != codes.shape[-2]:
        layers = codes.shape[-2] if codes.dim() >= 3 else "?"
        raise ValueError(f"per-layer strength needs one weight per W+ layer ({layers}), got shape {tuple(weight.shape)}")
    return weight[:, None]


def adapt_motion(source_first, target, strength=1.0) -> torch.Tensor:
    """Eq. 3. source_first (Z_s, ...) codes of the source's first frame, target (F, Z_t, ...) codes
    of the target's frames -> (F, Z_s, ...) adapted codes; frame 0 is exactly source_first.

    strength: a float (1 = the paper) or a vector over W+ layers (codes (..., num_ws, w_dim)).
    """
    source_first = torch.as_tensor(source_first)
    target = torch.as_tensor(target, dtype=source_first.dtype)
    if target.shape[2:] != source_first.shape[1:]:
        raise ValueError(f"source codes {tuple(source_first.shape)} and target codes {tuple(target.shape)} differ "
                         "beyond the slice axis")
    resampled = resample_slices(target, source_first.shape[0])
    displacement = resampled - resampled[:1]            # telescoped sum of frame-to-frame steps
    return source_first[None] + _layer_weights(strength, target) * displacement


def lv_volume_curve(labels, spacing) -> np.ndarray:
    """LV blood-pool volume (mL) per frame of labels (X, Y, Z, F).

    spacing: voxel sizes (dx, dy, dz) in mm, dz the slice spacing, or a 4x4 voxel-to-world affine.
    """
    spacing = np.asarray(spacing, dtype=float)
    affine = spacing if spacing.shape == (4, 4) else np.diag([*spacing, 1.0])
    return volume_curve_ml(labels, affine, LVC)
