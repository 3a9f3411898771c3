"""The evaluation figures; each function writes one PNG and keeps no figure alive."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..io.files import atomic_path
from ..labels import LAX_LABELS, LAX_VIEWS, LVC, LVM, SAX_LABELS
from ..phenotypes import PHENOTYPE_COLUMNS, PHENOTYPE_UNITS
from ..tables.cohort import agreement_stats, paired_phenotypes

COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple",
           "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan")
# Structure colours for overlays: one colour per label, line style tells reference from reconstruction.
LABEL_COLOURS = {1: "tab:red", 2: "tab:green", 3: "tab:blue", 4: "tab:orange", 5: "tab:purple"}
METRIC_LABELS = {"dice": "Dice", "hd95": "HD95 (mm)", "assd": "ASSD (mm)", "coverage": "coverage"}


def _figure(n_panels: int, ncols: int, panel_size=(3.6, 3.0)) -> tuple[Figure, list]:
    ncols = max(1, min(ncols, n_panels))
    nrows = max(1, math.ceil(n_panels / ncols))
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel())
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _legend_cols(handles, n_panels: int, ncols: int) -> int:
    """Legend columns that fit the figure width: about three entries per panel column."""
    return max(1, min(len(handles), 3 * max(1, min(ncols, n_panels))))


def _save(fig: Figure, path, dpi: int = 120) -> None:
    """Write the PNG atomically and drop the figure's artists."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    fig.clear()


def _methods(rows: pd.DataFrame, method_order=None) -> list[str]:
    present = list(dict.fromkeys(rows["method"]))
    return present if method_order is None else [m for m in method_order if m in set(present)]


# ---------------------------------------------------------------- Bland–Altman
def bland_altman(rows: pd.DataFrame, reference: str, phenotypes, path, methods=None, ncols: int = 3) -> None:
    """One panel per phenotype, methods in colours: mean-vs-difference scatter, bias (solid) and 95% LoA (dashed).

    One panel per phenotype (rather than per phenotype x method) keeps nine
    phenotypes x several methods readable and puts the methods side by side.
    """
    phenotypes = [p for p in PHENOTYPE_COLUMNS if p in rows.columns] if phenotypes is None else list(phenotypes)
    if reference not in set(rows["method"]):
        raise ValueError(f"reference method {reference!r} not in rows")
    methods = [m for m in _methods(rows, methods) if m != reference]
    fig, axes = _figure(len(phenotypes), ncols)
    for ax, p in zip(axes, phenotypes):
        unit = PHENOTYPE_UNITS.get(p, "")
        suffix = f" ({unit})" if unit else ""
        ax.axhline(0.0, color="0.6", lw=0.8)
        for i, m in enumerate(methods):
            colour = COLOURS[i % len(COLOURS)]
            values, ref = paired_phenotypes(rows, m, reference, p)
            stats = agreement_stats(values, ref)
            ax.scatter((values + ref) / 2, values - ref, s=12, color=colour, alpha=0.7, lw=0)
            if stats["n"]:
                ax.axhline(stats["bias"], color=colour, lw=1.2)
            if stats["n"] > 1:
                for limit in (stats["loa_low"], stats["loa_high"]):
                    ax.axhline(limit, color=colour, lw=0.9, ls="--")
        ax.set_title(p)
        ax.set_xlabel(f"mean of method and {reference}{suffix}")
        ax.set_ylabel(f"method − {reference}{suffix}")
    handles = [Line2D([], [], color=COLOURS[i % len(COLOURS)], marker="o", lw=1.2, label=m) for i, m in enumerate(methods)]
    handles += [Line2D([], [], color="k", lw=1.2, label="bias"), Line2D([], [], color="k", lw=0.9, ls="--", label="bias ± 1.96 SD")]
    fig.legend(handles=handles, loc="outside lower center", ncols=_legend_cols(handles, len(phenotypes), ncols), frameon=False)
    _save(fig, path)


# ---------------------------------------------------------------- Dice box plots
def dice_boxplot(rows: pd.DataFrame, path, structure=None, metric: str = "dice", method_order=None) -> None:
    """Box plots of ``metric`` per method, one panel per structure; LAX rows get one box per view.

    Works on LAX-intersection rows (with a ``view`` column) and on truth rows (without).
    NaN values are left out of the boxes.
    """
    known = [s for s in LAX_LABELS.values() if s in set(rows["structure"])]
    structures = [structure] if structure is not None else known + [s for s in dict.fromkeys(rows["structure"]) if s not in known]
    methods = _methods(rows, method_order)
    hues = [v for v in LAX_VIEWS if v in set(rows["view"])] if "view" in rows.columns else [None]
    width = 0.8 / len(hues)
    fig, axes = _figure(len(structures), 3, panel_size=(max(3.6, 0.9 * len(methods) * len(hues) ** 0.5 + 1.5), 3.2))
    for ax, s in zip(axes, structures):
        sub = rows[rows["structure"] == s]
        for j, hue in enumerate(hues):
            part = sub if hue is None else sub[sub["view"] == hue]
            data, positions = [], []
            for i, m in enumerate(methods):
                values = part.loc[part["method"] == m, metric].astype(float).dropna().to_numpy()
                if values.size:
                    data.append(values)
                    positions.append(i + (j - (len(hues) - 1) / 2) * width)
            if not data:
                continue
            colour = COLOURS[j % len(COLOURS)]
            ax.boxplot(data, positions=positions, widths=width * 0.85, patch_artist=True, manage_ticks=False,
                       boxprops=dict(facecolor=colour, alpha=0.5), medianprops=dict(color="k"),
                       flierprops=dict(marker=".", markersize=3))
        ax.set_xticks(range(len(methods)), methods)
        ax.set_xlim(-0.6, len(methods) - 0.4)
        if metric == "dice":
            ax.set_ylim(0.0, 1.02)
        ax.set_title(s)
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.grid(axis="y", lw=0.4, alpha=0.5)
    if hues != [None]:
        handles = [Line2D([], [], color=COLOURS[j % len(COLOURS)], lw=6, alpha=0.5, label=h) for j, h in enumerate(hues)]
        fig.legend(handles=handles, loc="outside lower center", ncols=len(hues), frameon=False)
    _save(fig, path)


# ---------------------------------------------------------------- LAX overlays
def _plane(array, what: str) -> np.ndarray:
    """A 2D plane from an (X, Y[, 1, 1]) array: LAX volumes carry singleton Z (and T) axes."""
    a = np.asarray(array)
    while a.ndim > 2 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"{what} must be a 2D plane, got shape {np.shape(array)}")
    return a


def _draw_panel(ax, image, ref, recon, title, labels) -> None:
    image, ref, recon = _plane(image, "image"), _plane(ref, "reference labels"), _plane(recon, "reconstruction labels")
    if not image.shape == ref.shape == recon.shape:
        raise ValueError(f"shapes differ: image {image.shape}, reference {ref.shape}, reconstruction {recon.shape}")
    finite = image[np.isfinite(image)]
    vmin, vmax = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
    # Transpose so the first voxel axis runs left to right, as NIfTI viewers show (X, Y) planes.
    ax.imshow(image.T, cmap="gray", origin="lower", vmin=vmin, vmax=vmax, interpolation="nearest")
    for value in labels:
        # LV myocardium is outlined by its epicardium (LVC + LVM), so it never hides the endocardial LVC contour.
        values = (LVC, LVM) if value == LVM else (value,)
        for mask, style in ((np.isin(ref, values), "-"), (np.isin(recon, values), "--")):
            if mask.any() and not mask.all():
                ax.contour(mask.T.astype(float), levels=[0.5], colors=[LABEL_COLOURS.get(value, "yellow")],
                           linewidths=1.2, linestyles=style, origin="lower")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def lax_overlay_grid(panels, path, title: str = "", labels=tuple(SAX_LABELS), ncols: int = 3) -> None:
    """One PNG of several LAX planes: image in grey, reference contours solid, reconstruction dashed.

    Colour = structure; LVM is drawn as the epicardial outline of LVC + LVM.
    ``panels`` is a sequence of ``(image, ref_labels, recon_labels, title)`` with the
    reconstruction's labels already resampled onto the LAX plane.
    """
    panels = list(panels)
    if not panels:
        raise ValueError("no panels to draw")
    fig, axes = _figure(len(panels), ncols, panel_size=(3.2, 3.4))
    for ax, panel in zip(axes, panels):
        image, ref, recon, *rest = panel
        _draw_panel(ax, image, ref, recon, rest[0] if rest else "", labels)
    handles = [Line2D([], [], color=LABEL_COLOURS.get(v, "yellow"), lw=1.5, label=LAX_LABELS.get(v, str(v))) for v in labels]
    handles += [Line2D([], [], color="k", lw=1.2, label="reference"),
                Line2D([], [], color="k", lw=1.2, ls="--", label="reconstruction")]
    fig.legend(handles=handles, loc="outside lower center", ncols=_legend_cols(handles, len(panels), ncols),
               frameon=False, fontsize=8)
    if title:
        fig.suptitle(title)
    _save(fig, path)


def lax_overlay(image, ref_labels=None, recon_labels=None, path=None, title: str = "", labels=tuple(SAX_LABELS)) -> None:
    """One LAX plane with reference and reconstruction contours.

    Also accepts a list of ``(image, ref, recon, title)`` tuples as ``image`` (with the
    label arguments left out) and then draws them all in one PNG, as ``lax_overlay_grid``.
    """
    if path is None:
        raise TypeError("lax_overlay needs a path")
    if ref_labels is None and recon_labels is None:
        lax_overlay_grid(image, path, title=title, labels=labels)
    elif ref_labels is None or recon_labels is None:
        raise TypeError("give both ref_labels and recon_labels, or a list of panels")
    else:
        lax_overlay_grid([(image, ref_labels, recon_labels, title)], path, labels=labels)
