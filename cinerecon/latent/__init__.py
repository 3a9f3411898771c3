"""Latent-space reconstruction methods (DeepRecon, DMCVR): per-slice latent codes of the
acquired SAX stack, interpolated onto the fine reconstruction grid, then generated."""
