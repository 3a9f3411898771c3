"""Cardiac phenotypes from SAX label volumes (UK Biobank community-pipeline definitions).

Columns, in table order (``PHENOTYPE_COLUMNS``, units in ``PHENOTYPE_UNITS``):
LVEDV, LVESV, LVSV (mL), LVEF (%), LVM (g, at ED), RVEDV, RVESV, RVSV (mL), RVEF (%).
ED is frame 0; ES is the frame of minimal LV blood-pool volume. An EF whose EDV
is zero is NaN.
"""

from .ventricular import (
    CINE_COLUMNS,
    PHENOTYPE_COLUMNS,
    PHENOTYPE_UNITS,
    ejection_fraction,
    find_es_frame,
    phenotypes,
    phenotypes_from_cine,
)
from .volumes import label_volumes_ml, volume_curve_ml, voxel_volume_ml

__all__ = [
    "CINE_COLUMNS",
    "PHENOTYPE_COLUMNS",
    "PHENOTYPE_UNITS",
    "ejection_fraction",
    "find_es_frame",
    "label_volumes_ml",
    "phenotypes",
    "phenotypes_from_cine",
    "volume_curve_ml",
    "voxel_volume_ml",
]
