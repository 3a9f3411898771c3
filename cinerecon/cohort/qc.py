"""Automatic quality control of a predicted SAX segmentation, in the spirit of ukbb_cardiac.

Bai et al. (2018) keep a subject's phenotypes only when its segmentation passes simple
checks; here every check that fails becomes a flag with its reason and the subject
keeps its row (a cohort table never drops a subject silently):
- every structure (LVC, LVM, RVC) has at least `min_voxels` voxels at ED and at ES;
- the LV blood pool spans at least `min_slices` slices at ED, without a gap;
- the mid-ventricular slice (middle of the LV's extent at ED) shows LVC, LVM and RVC;
- the phenotypes lie in physiologically plausible ranges.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from cinerecon.labels import SAX_LABELS

# Plausible adult ranges (wide: they catch failed segmentations, not disease).
PLAUSIBLE = {
    "LVEDV": (30.0, 450.0), "LVESV": (5.0, 350.0), "LVEF": (10.0, 90.0), "LVM": (20.0, 350.0),
    "RVEDV": (30.0, 500.0), "RVESV": (5.0, 400.0), "RVEF": (10.0, 90.0),
}


@dataclass(frozen=True)
class QCSettings:
    min_voxels: int = 10          # per structure, at ED and at ES
    min_slices: int = 3           # LV blood pool slices at ED
    plausible: dict = field(default_factory=lambda: dict(PLAUSIBLE))  # phenotype: (low, high)

    @classmethod
    def from_dict(cls, values: dict | None) -> "QCSettings":
        values = dict(values or {})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown QC setting(s) {sorted(unknown)}")
        if "plausible" in values:
            values["plausible"] = {**PLAUSIBLE, **{k: tuple(v) for k, v in values["plausible"].items()}}
        return cls(**values)


def qc_flags(seg_4d: np.ndarray, frames: dict, phenotypes: dict, settings: QCSettings = QCSettings()) -> list[str]:
    """Reasons the segmentation (X, Y, Z, T) is doubtful; [] when it passes every check.

    frames: {"ED": t, "ES": t}; phenotypes: the subject's values (PHENOTYPE_COLUMNS).
    """
    flags = []
    for phase, t in frames.items():
        for value, name in SAX_LABELS.items():
            n = int(np.count_nonzero(seg_4d[..., t] == value))
            if n < settings.min_voxels:
                flags.append(f"{name} has {n} voxels at {phase} (< {settings.min_voxels})")
    ed = seg_4d[..., frames["ED"]]
    lv_slices = np.flatnonzero((ed == 1).any(axis=(0, 1)))
    if lv_slices.size < settings.min_slices:
        flags.append(f"LV blood pool on {lv_slices.size} slice(s) at ED (< {settings.min_slices})")
    if lv_slices.size:
        gaps = sorted(set(range(lv_slices[0], lv_slices[-1] + 1)) - set(lv_slices.tolist()))
        if gaps:
            flags.append(f"LV blood pool missing on slice(s) {gaps} inside its extent at ED")
        mid = int(round((lv_slices[0] + lv_slices[-1]) / 2))
        missing = [name for value, name in SAX_LABELS.items() if not (ed[:, :, mid] == value).any()]
        if missing:
            flags.append(f"no {'/'.join(missing)} on the mid-ventricular slice {mid} at ED")
    for name, (low, high) in settings.plausible.items():
        value = phenotypes.get(name, np.nan)
        if not np.isfinite(value) or not low <= value <= high:
            flags.append(f"{name} {value:.1f} outside [{low:g}, {high:g}]")
    return flags
