"""How a generative model's square image grid relates to the SAX crops it learns from.

A model may work at another size than the crop (DMCVR's published 256 px on UK Biobank's
~96-128 px crops; the demo's 64 px DeepRecon and DMCVR on 96 px crops, for CPU time): the
crops are resampled to it over the same field of view and its images resampled back, so a
generated slice lies exactly on its crop's pixel grid: no shift, the same affine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .unet import pad_to_multiple


def round_up(size: int, multiple: int) -> int:
    return -(-size // multiple) * multiple


def resample_fov(x: torch.Tensor, size: int) -> torch.Tensor:
    """Square slices (N, C, h, h) resampled to (N, C, size, size) over the same field of view:
    pixel i of either grid is centred at (i + 0.5) / n of the field (bilinear, align_corners
    False; antialiased when shrinking), so nothing shifts between the crop's grid and the
    model's. Identity when the size is unchanged."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    shrink = size < x.shape[-1]
    out = F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
    return out.to(x.dtype)


@dataclass(frozen=True)
class ModelGrid:
    """Square crops of `crop` pixels on a model's `size` grid and back.

    When `size` is the crop rounded up to the network's `multiple`, slices are
    replicate-padded to it (and cropped back); otherwise they are resampled over the same
    field of view (:func:`resample_fov`) and back.
    """

    crop: int
    size: int
    multiple: int = 1

    @property
    def resampled(self) -> bool:
        return self.size != round_up(self.crop, self.multiple)

    @property
    def pixel_scale(self) -> float:
        """Model pixel size / crop pixel size (1 unless resampled)."""
        return self.crop / self.size if self.resampled else 1.0

    def to_model(self, images) -> torch.Tensor:
        x = images.float() if torch.is_tensor(images) else torch.as_tensor(np.asarray(images, dtype=np.float32))
        if x.shape[-1] != self.crop or x.shape[-2] != self.crop:
            raise ValueError(f"expected {self.crop} x {self.crop} crops, got {tuple(x.shape[-2:])}")
        if self.resampled:
            return resample_fov(x, self.size).clamp(-1, 1)
        return pad_to_multiple(x, self.multiple)[0]

    def to_crop(self, x: torch.Tensor) -> torch.Tensor:
        if self.resampled:
            return resample_fov(x, self.crop)
        top = (x.shape[-2] - self.crop) // 2
        left = (x.shape[-1] - self.crop) // 2
        return x[..., top:top + self.crop, left:left + self.crop]

    @classmethod
    def of(cls, model, crop: int) -> "ModelGrid":
        """The grid of a DiffAE (config.image_size, config.multiple) or a StyleGAN2 generator
        (config.resolution; any size, no multiple)."""
        config = model.config
        return cls(crop, getattr(config, "image_size", None) or config.resolution, getattr(config, "multiple", 1))
