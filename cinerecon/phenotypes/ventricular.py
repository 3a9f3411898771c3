"""LV/RV volumes, function and mass, with the UK Biobank community pipeline's definitions.

As in ``ukbb_cardiac`` (Bai et al. 2018, ``eval_ventricular_volume.py``): volumes by
voxel counting on the SAX label stack (see :mod:`.volumes`), ED = frame 0 and
ES = frame of minimal LV blood-pool volume, SV = EDV - ESV, EF = 100 * SV / EDV,
LV mass = myocardial volume at ED x 1.05 g/mL.
"""

from __future__ import annotations

import numpy as np

from ..labels import LVC, MYOCARDIAL_DENSITY_G_PER_ML
from .volumes import label_volumes_ml, volume_curve_ml

# Fixed column order of phenotype tables, with units.
PHENOTYPE_UNITS = {
    "LVEDV": "mL",
    "LVESV": "mL",
    "LVSV": "mL",
    "LVEF": "%",
    "LVM": "g",
    "RVEDV": "mL",
    "RVESV": "mL",
    "RVSV": "mL",
    "RVEF": "%",
}
PHENOTYPE_COLUMNS = tuple(PHENOTYPE_UNITS)
# phenotypes_from_cine adds the ES frame index (0-based; ED is frame 0).
CINE_COLUMNS = PHENOTYPE_COLUMNS + ("es_frame",)


def find_es_frame(lv_volumes_per_frame) -> int:
    """Index of the minimal LV blood-pool volume; ties go to the first frame, NaN frames are skipped."""
    volumes = np.asarray(lv_volumes_per_frame, dtype=float)
    if volumes.ndim != 1 or volumes.size == 0:
        raise ValueError(f"expected a non-empty 1D volume curve, got shape {volumes.shape}")
    if np.isnan(volumes).all():
        raise ValueError("every frame's LV volume is NaN")
    return int(np.nanargmin(volumes))


def ejection_fraction(edv: float, esv: float) -> float:
    """EF in % = 100 (EDV - ESV) / EDV; NaN when EDV is zero (structure absent), never a division error."""
    if edv == 0:
        return float("nan")
    return 100.0 * (edv - esv) / edv


def phenotypes(ed_labels: np.ndarray, es_labels: np.ndarray, affine) -> dict[str, float]:
    """PHENOTYPE_COLUMNS (mL, g, %) from ED and ES 3D SAX label volumes sharing one affine."""
    ed_labels, es_labels = np.asarray(ed_labels), np.asarray(es_labels)
    if ed_labels.shape != es_labels.shape:
        raise ValueError(f"ED and ES label shapes differ: {ed_labels.shape} vs {es_labels.shape}")
    ed = label_volumes_ml(ed_labels, affine)
    es = label_volumes_ml(es_labels, affine)
    row = {}
    for side, cavity in (("LV", "LVC"), ("RV", "RVC")):
        edv, esv = ed[cavity], es[cavity]
        row[f"{side}EDV"] = edv
        row[f"{side}ESV"] = esv
        row[f"{side}SV"] = edv - esv
        row[f"{side}EF"] = ejection_fraction(edv, esv)
    row["LVM"] = ed["LVM"] * MYOCARDIAL_DENSITY_G_PER_ML
    return {column: float(row[column]) for column in PHENOTYPE_COLUMNS}


def phenotypes_from_cine(labels_4d: np.ndarray, affine) -> dict[str, float]:
    """Phenotypes of an (X, Y, Z, T) SAX label cine: ED = frame 0, ES = minimal LV volume; adds ``es_frame``."""
    labels_4d = np.asarray(labels_4d)
    es_frame = find_es_frame(volume_curve_ml(labels_4d, affine, LVC))
    row = phenotypes(labels_4d[..., 0], labels_4d[..., es_frame], affine)
    row["es_frame"] = es_frame
    return row
