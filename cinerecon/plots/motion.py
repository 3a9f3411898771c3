"""DeepRecon's Fig. 4: LV cavity volume over the cardiac cycle for source, target and adapted motion."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..io.files import atomic_path
from ..labels import LVC

# The paper's colours: adapted blue, source orange, target green.
CURVES = {"adapted_ml": ("Adapted", "tab:blue"), "source_ml": ("Source", "tab:orange"),
          "target_ml": ("Target", "tab:green")}
MAX_STRIP = 10  # frames drawn under the curves


def motion_adaptation_figure(curves: pd.DataFrame, strip_images=None, strip_labels=None, path=None,
                             title: str = "") -> None:
    """Curves (columns time_fraction, source_ml, target_ml, adapted_ml; optional *_manual_ml dotted)
    and, optionally, a strip of one slice of the adapted frames (X, Y, F) with the LVC contour."""
    if path is None:
        raise TypeError("motion_adaptation_figure needs a path")
    show = [] if strip_images is None else list(np.linspace(0, strip_images.shape[-1] - 1,
                                                            min(MAX_STRIP, strip_images.shape[-1])).round().astype(int))
    ncols = max(1, len(show))
    fig = Figure(figsize=(max(6.0, 1.2 * ncols), 5.2 if show else 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2 if show else 1, ncols, height_ratios=[3, 1.3] if show else [1])
    ax = fig.add_subplot(grid[0, :])
    for column, (name, colour) in CURVES.items():
        ax.plot(curves["time_fraction"], curves[column], "-o", ms=3, color=colour, label=name)
        manual = column.replace("_ml", "_manual_ml")
        if manual in curves and curves[manual].notna().any():
            ax.plot(curves["time_fraction"], curves[manual], ":", color=colour, label=f"{name} (manual labels)")
    ax.set_xlabel("time (fraction of the cardiac cycle)")
    ax.set_ylabel("LV cavity volume (mL)")
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(title or "Motion adaptation", fontsize=10)
    for col, f in enumerate(show):
        a = fig.add_subplot(grid[1, col])
        # Transposed with origin lower, as the other figures show (X, Y) planes.
        a.imshow(strip_images[..., f].T, cmap="gray", vmin=-1, vmax=1, origin="lower", interpolation="nearest")
        if strip_labels is not None:
            mask = strip_labels[..., f] == LVC
            if mask.any() and not mask.all():
                a.contour(mask.T.astype(float), levels=[0.5], colors=["tab:red"], linewidths=0.8, origin="lower")
        a.set_title(f"{curves['time_fraction'].iloc[f]:.2f}", fontsize=7)
        a.set_xticks([])
        a.set_yticks([])
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    fig.clear()
