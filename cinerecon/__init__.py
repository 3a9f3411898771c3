"""cinerecon: UK Biobank cine MRI -> 3D cardiac reconstructions, segmentations and evaluations."""

__version__ = "0.1.0"
