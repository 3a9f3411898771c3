"""Cardiac phenotypes from SAX label volumes (UK Biobank community-pipeline definitions).

Columns, in table order (``PHENOTYPE_COLUMNS``, units in ``PHENOTYPE_UNITS``):
LVEDV, LVESV, LVSV (mL), LVEF (%), LVM (g, at ED), RVEDV, RVESV, RVSV (mL), RVEF (%).
ED and ES: :func:`ed_es_frames` (dense and ED/ES-only label cines alike). An EF whose EDV
is zero is NaN.
"""

from .ventricular import (
    CINE_COLUMNS,
    PHENOTYPE_COLUMNS,
    PHENOTYPE_UNITS,
    LabelFramesError,
    ed_es_frames,
    ejection_fraction,
    find_es_frame,
    labelled_frames,
    phenotypes,
    phenotypes_from_cine,
)
from .volumes import label_volumes_ml, volume_curve_ml, voxel_volume_ml

__all__ = [
    "CINE_COLUMNS",
    "PHENOTYPE_COLUMNS",
    "PHENOTYPE_UNITS",
    "LabelFramesError",
    "ed_es_frames",
    "ejection_fraction",
    "find_es_frame",
    "label_volumes_ml",
    "labelled_frames",
    "phenotypes",
    "phenotypes_from_cine",
    "volume_curve_ml",
    "voxel_volume_ml",
]
