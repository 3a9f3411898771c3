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
METHOD_FAMILIES = ("baselines", "segmentation", "generative", "other")
FAMILY_COLOURS = {"baselines": "tab:blue", "segmentation": "tab:green", "generative": "tab:red", "other": "tab:gray"}
# The figure's pixel budget: panels are never drawn larger than this, dpi drops instead.
BA_PANEL_SIZE = (2.4, 2.0)
BA_MAX_PIXELS = 4000


def method_family(method: str) -> str:
    """The family a method's column sits in: baselines, segmentation, generative, or other.

    "labels" (disc summation of the acquired label stack) counts as a baseline. A name
    not listed here lands in "other", so a new method still gets its panels.
    """
    name = str(method).lower()
    if name in {"labels", "nn", "linear", "sdf", "cpd"}:
        return "baselines"
    if name in {"seg", "directseg", "wplus_segnet", "unet_seg"}:
        return "segmentation"
    if name.startswith("deeprecon") or name in {"dmcvr", "diffae", "gemini_gan", "unet_image"}:
        return "generative"
    return "other"


def _decimals(scale: float) -> int:
    return 0 if scale >= 100 else 1 if scale >= 1 else 2


def _signed(value: float, decimals: int) -> str:
    """"+2.0", "-11.6"; a value that rounds to zero prints "+0.0", never "-0.0"."""
    return f"{round(value, decimals) + 0.0:+.{decimals}f}"


def agreement_label(stats: dict) -> str:
    """The two lines a panel prints from ``agreement_stats``: n and bias, then the 95% limits
    of agreement (decimals by the panel's magnitude: 0 from 100 on, 1 from 1 on, else 2)."""
    if not stats["n"]:
        return "no data"
    values = [stats[k] for k in ("bias", "loa_low", "loa_high") if np.isfinite(stats[k])]
    d = _decimals(max(abs(v) for v in values))
    head = f"n={stats['n']}  bias {_signed(stats['bias'], d)}"
    if not np.isfinite(stats["sd"]):  # one subject: no spread, no limits
        return f"{head}\nLoA n/a"
    return f"{head}\nLoA {_signed(stats['loa_low'], d)} to {_signed(stats['loa_high'], d)}"


def _limits(values, pad: float = 0.08, include=()) -> tuple[float, float]:
    """(low, high) around the finite ``values`` (and ``include``), padded; (-1, 1) when none."""
    x = np.asarray([*np.ravel(np.asarray(values, dtype=float)), *include], dtype=float)
    x = x[np.isfinite(x)]
    if not x.size:
        return -1.0, 1.0
    lo, hi = float(x.min()), float(x.max())
    span = hi - lo
    if span <= 0:
        span = max(abs(hi), 1.0) * 0.2
    return lo - pad * span, hi + pad * span


def bland_altman(rows: pd.DataFrame, reference: str, phenotypes, path, methods=None) -> dict:
    """Bland–Altman small multiples: one row per phenotype, one column per method.

    Columns are grouped by family (``method_family``: baselines, segmentation, generative,
    other), each family in the caller's ``methods`` order (else first appearance). A panel
    scatters the difference (method − reference) against their mean, with the bias (solid)
    and the 95% limits of agreement, bias ± 1.96 SD (dashed), and prints n, bias and the
    limits in its title: the numbers of the agreement table, from the same
    ``paired_phenotypes`` + ``agreement_stats``. Both axes are shared by the methods of one
    family within a phenotype row and not across families, so a generative method's error
    of hundreds of mL does not flatten the baselines; the figure says so. A method without
    a pair for a phenotype gets a "no data" panel.

    Returns {(phenotype, method): agreement_stats' dict + family, column, label, xlim, ylim},
    in drawing order (phenotype-major, columns left to right).
    """
    phenotypes = [p for p in PHENOTYPE_COLUMNS if p in rows.columns] if phenotypes is None else list(phenotypes)
    if reference not in set(rows["method"]):
        raise ValueError(f"reference method {reference!r} not in rows")
    methods = [m for m in _methods(rows, methods) if m != reference]
    families = {f: [m for m in methods if method_family(m) == f] for f in METHOD_FAMILIES}
    families = {f: ms for f, ms in families.items() if ms}
    columns = [m for ms in families.values() for m in ms]

    # statistics and limits first: the limits are shared within (phenotype, family)
    summary, points = {}, {}
    for p in phenotypes:
        for f, ms in families.items():
            for m in ms:
                values, ref = paired_phenotypes(rows, m, reference, p)
                stats = agreement_stats(values, ref)
                points[(p, m)] = ((values + ref) / 2, values - ref)
                summary[(p, m)] = dict(stats, family=f, column=columns.index(m), label=agreement_label(stats))
            means = [points[(p, m)][0] for m in ms]
            lines = [summary[(p, m)][k] for m in ms for k in ("bias", "loa_low", "loa_high")]
            ylim = _limits(np.concatenate([points[(p, m)][1] for m in ms]), include=[0.0, *lines])
            xlim = _limits(np.concatenate(means))
            for m in ms:
                summary[(p, m)].update(xlim=xlim, ylim=ylim)
    summary = {(p, m): summary[(p, m)] for p in phenotypes for m in columns}

    width, height = BA_PANEL_SIZE
    n_cols, n_rows = max(1, len(columns)), max(1, len(phenotypes))
    figsize = (width * n_cols + 0.9 * max(1, len(families)), height * n_rows + 1.6)
    dpi = max(50, min(120, int(BA_MAX_PIXELS / max(figsize))))
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(f"Bland–Altman agreement with {reference!r}", fontsize=12)
    if not columns or not phenotypes:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, f"no method besides {reference!r} to compare" if not columns else "no phenotypes",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        _save(fig, path, dpi=dpi)
        return summary
    subfigs = np.atleast_1d(fig.subfigures(1, len(families), width_ratios=[len(ms) for ms in families.values()],
                                           wspace=0.02))
    for k, (subfig, (f, ms)) in enumerate(zip(subfigs, families.items())):
        colour = FAMILY_COLOURS[f]
        if k % 2:
            subfig.set_facecolor("0.96")
        subfig.suptitle(f"{f} ({len(ms)})", fontsize=11, fontweight="bold", color=colour)
        grid = subfig.subplots(len(phenotypes), len(ms), squeeze=False)
        for i, p in enumerate(phenotypes):
            unit = PHENOTYPE_UNITS.get(p, "")
            suffix = f" ({unit})" if unit else ""
            for j, m in enumerate(ms):
                ax, entry = grid[i, j], summary[(p, m)]
                mean, diff = points[(p, m)]
                ax.set_xlim(entry["xlim"])
                ax.set_ylim(entry["ylim"])
                ax.axhline(0.0, color="0.6", lw=0.8)
                ax.set_title(f"{m}\n{entry['label']}" if entry["n"] else m, fontsize=7.5, linespacing=1.15)
                if entry["n"]:
                    ax.scatter(mean, diff, s=10, color=colour, alpha=0.6, lw=0)
                    ax.axhline(entry["bias"], color="k", lw=1.1)
                    if entry["n"] > 1 and np.isfinite(entry["sd"]):
                        for limit in (entry["loa_low"], entry["loa_high"]):
                            ax.axhline(limit, color="k", lw=0.8, ls="--")
                else:
                    ax.text(0.5, 0.5, "no data", ha="center", va="center", color="0.45", transform=ax.transAxes)
                ax.tick_params(labelsize=7, length=2.5, pad=1.5)
                ax.grid(lw=0.3, alpha=0.5)
                if j == 0:
                    ax.set_ylabel(f"{p}{suffix}\nmethod − {reference}", fontsize=8)
                else:
                    ax.tick_params(labelleft=False)
                if i == len(phenotypes) - 1:
                    ax.set_xlabel(f"mean of method and {reference}", fontsize=7.5)
    fig.supxlabel(
        "Rows: phenotypes (unit in the row label). Solid line: bias; dashed: 95% limits of agreement "
        "(bias ± 1.96 SD); grey: zero.\nAxes are shared by the methods of one family within a row, "
        "NOT across families: compare the printed numbers between families, not the heights.",
        fontsize=9, color="0.25")
    _save(fig, path, dpi=dpi)
    return summary


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
