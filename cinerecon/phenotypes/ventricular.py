"""LV/RV volumes, function and mass, with the UK Biobank community pipeline's definitions.

As in ``ukbb_cardiac`` (Bai et al. 2018, ``eval_ventricular_volume.py``): volumes by
voxel counting on the SAX label stack (see :mod:`.volumes`), ED = frame 0 and
ES = frame of minimal LV blood-pool volume, SV = EDV - ESV, EF = 100 * SV / EDV,
LV mass = myocardial volume at ED x 1.05 g/mL.

Real label cines are sparse: UK Biobank's manual SAX labels exist at ED and ES only and
every other frame is all background. :func:`ed_es_frames` is the one rule that picks ED
and ES for dense and sparse cines alike; every consumer (phenotypes, reconstructions,
training frames, inversion, alignment, evaluation) calls it.
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


class LabelFramesError(ValueError):
    """A label cine from which ED and ES cannot be told (fewer than two labelled frames)."""


def labelled_frames(labels_4d: np.ndarray) -> np.ndarray:
    """Indices of the frames of an (X, Y, Z, T) label cine that carry any label.

    An all-background frame is unlabelled (UK Biobank labels only ED and ES), never a
    frame with an empty heart.
    """
    labels_4d = np.asarray(labels_4d)
    if labels_4d.ndim != 4:
        raise ValueError(f"expected an (X, Y, Z, T) label array, got shape {labels_4d.shape}")
    return np.flatnonzero(labels_4d.reshape(-1, labels_4d.shape[3]).any(axis=0))


def ed_es_frames(labels_4d: np.ndarray, affine) -> dict[str, int]:
    """{"ED": frame, "ES": frame} of a SAX label cine, dense or sparse.

    Among the frames that carry labels: ED is frame 0 (the ECG-triggered first frame, as
    ukbb_cardiac) when it is labelled, otherwise the labelled frame of largest LV blood
    pool; ES is the labelled frame of smallest LV blood pool other than ED. So a dense cine
    gives ED = 0 and ES = the minimum of the LV curve, and a cine labelled at two frames
    gives exactly those two. Fewer than two labelled frames raise LabelFramesError.

    >>> import numpy as np
    >>> cine = np.zeros((4, 4, 1, 30), np.uint8)
    >>> cine[:2, :2, 0, 0] = 1      # ED: 4 voxels of LV blood pool
    >>> cine[:1, :2, 0, 12] = 1     # ES: 2 voxels
    >>> ed_es_frames(cine, np.eye(4))
    {'ED': 0, 'ES': 12}
    """
    frames = labelled_frames(labels_4d)
    if frames.size < 2:
        which = f"only frame {int(frames[0])} carries" if frames.size else "no frame carries"
        raise LabelFramesError(f"{which} labels: ED and ES need two labelled frames")
    lv = volume_curve_ml(labels_4d, affine, LVC)[frames]
    ed = 0 if frames[0] == 0 else int(frames[np.argmax(lv)])  # argmax: first of ties
    others = frames != ed
    es = int(frames[others][np.argmin(lv[others])])           # argmin: first of ties
    return {"ED": ed, "ES": es}


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
    """Phenotypes of an (X, Y, Z, T) SAX label cine, dense or labelled at ED/ES only
    (frames by :func:`ed_es_frames`); adds ``es_frame``."""
    labels_4d = np.asarray(labels_4d)
    frames = ed_es_frames(labels_4d, affine)
    row = phenotypes(labels_4d[..., frames["ED"]], labels_4d[..., frames["ES"]], affine)
    row["es_frame"] = frames["ES"]
    return row
