"""Segmentation networks for SAX cine slices.

:mod:`.unet` holds the 2D U-Net (the "Seg" of DeepRecon, and the morphology
encoder whose bottleneck DMCVR conditions on) and its loss; :mod:`.data` turns
subjects into normalised training slices; :mod:`.train_seg` trains, checkpoints
(weights-only) and predicts in batches.
"""

from .unet import UNet, UNetConfig, pad_to_multiple, seg_loss, soft_dice

__all__ = ["UNet", "UNetConfig", "pad_to_multiple", "seg_loss", "soft_dice"]
