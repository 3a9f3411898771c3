"""Atrial volumes from LAX labels by the area-length method (Bai et al. 2020's ukbb_cardiac).

- LA, biplane: V = 8 / (3 pi) * A_2ch * A_4ch / L, L the shorter of the two views' lengths;
- RA, single plane (4ch): V = 8 / (3 pi) * A_4ch^2 / L_4ch.

A is the atrium's area in the view and L its length along its principal axis. ukbb_cardiac
measures L from the valve's midpoint to the atrial roof, which needs the ventricles on the
LAX labels; UK Biobank's manual LAX labels draw the atria only, so the principal axis stands
in. Both give the exact volume of a prolate ellipsoid cut through its long axis (test).

Per view, the frames its labels carry; LAVmax / LAVmin are the largest and smallest volume
over the frames both views carry (with ED/ES-only labels: ventricular ES and ED, where the
atria are largest and nearly smallest), LASV their difference, LAEF = LASV / LAVmax.
"""

from __future__ import annotations

import math

import numpy as np

from cinerecon.labels import LA, RA
from cinerecon.phenotypes.ventricular import labelled_frames

ATRIAL_COLUMNS = ("LAVmax", "LAVmin", "LASV", "LAEF", "RAVmax", "RAVmin", "RASV", "RAEF")


def area_and_length(mask: np.ndarray, pixel_mm: tuple[float, float]) -> tuple[float, float]:
    """(area mm^2, length mm along the principal axis) of a 2D mask; (0, 0) if empty."""
    points = np.argwhere(mask).astype(float) * np.asarray(pixel_mm)
    if len(points) == 0:
        return 0.0, 0.0
    area = len(points) * pixel_mm[0] * pixel_mm[1]
    if len(points) < 2:
        return area, float(max(pixel_mm))
    centred = points - points.mean(axis=0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    along = centred @ axis
    # pixel centres span the length less one pixel's extent along the axis
    return area, float(along.max() - along.min() + abs(axis[0]) * pixel_mm[0] + abs(axis[1]) * pixel_mm[1])


def area_length_ml(area_a: float, area_b: float, length: float) -> float:
    return 8 / (3 * math.pi) * area_a * area_b / length / 1000 if length > 0 else 0.0


def _view_measures(labels_4d: np.ndarray, affine: np.ndarray, value: int) -> dict[int, tuple[float, float]]:
    """{frame: (area, length)} of `value` on a LAX cine (X, Y, 1, T), its labelled frames."""
    pixel_mm = tuple(float(np.linalg.norm(affine[:3, i])) for i in (0, 1))
    return {int(t): area_and_length(labels_4d[:, :, 0, t] == value, pixel_mm) for t in labelled_frames(labels_4d)}


def atrial_volumes(views: dict) -> dict[str, dict[int, float]]:
    """{"LA": {frame: mL}, "RA": {frame: mL}} from {"la_2ch": (labels, affine), "la_4ch": ...}
    (pipeline values; a view left out or without the atrium gives no volume)."""
    out = {"LA": {}, "RA": {}}
    if "la_2ch" in views and "la_4ch" in views:
        two, four = (_view_measures(*views[v], LA) for v in ("la_2ch", "la_4ch"))
        for t in sorted(set(two) & set(four)):
            (a2, l2), (a4, l4) = two[t], four[t]
            if a2 > 0 and a4 > 0:
                out["LA"][t] = area_length_ml(a2, a4, min(l2, l4))
    if "la_4ch" in views:
        for t, (a4, l4) in _view_measures(*views["la_4ch"], RA).items():
            if a4 > 0:
                out["RA"][t] = area_length_ml(a4, a4, l4)
    return out


def atrial_phenotypes(views: dict) -> dict[str, float]:
    """ATRIAL_COLUMNS (mL, %); NaN for an atrium measured at fewer than two frames."""
    row = {}
    for atrium, volumes in atrial_volumes(views).items():
        if len(volumes) < 2:
            row.update({f"{atrium}{k}": math.nan for k in ("Vmax", "Vmin", "SV", "EF")})
            continue
        vmax, vmin = max(volumes.values()), min(volumes.values())
        row.update({f"{atrium}Vmax": vmax, f"{atrium}Vmin": vmin, f"{atrium}SV": vmax - vmin,
                    f"{atrium}EF": 100 * (vmax - vmin) / vmax})
    return {k: row[k] for k in ATRIAL_COLUMNS}
