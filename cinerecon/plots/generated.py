"""What the generative methods make of a subject's SAX stack: acquired slices beside each
method's rebuild of them and of the slices half way to the next one (the learning-curve
benchmark's figure; a look at the images behind the Dice and PSNR numbers)."""

from __future__ import annotations

import json

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..baselines.grid import acquired_index
from ..io.files import atomic_path
from ..io.nifti import load_nifti
from ..layout import Layout
from ..models.data import normalise_intensity


def slice_columns(n_slices: int, count: int = 3) -> list[int]:
    """`count` acquired slices spread from base to apex, each with a next slice (j < n - 1)."""
    if n_slices < 2:
        raise ValueError("need two slices to show a slice between them")
    first = min(1, n_slices - 2)  # skip the basal end slice when there are enough
    return sorted({int(round(v)) for v in np.linspace(first, n_slices - 2, count)})


def between_fraction(k: int) -> float:
    """Where the fine slice k//2 after an acquired one lies, in slice spacings: 1/2 for even k."""
    return (k // 2) / k


def panel_rows(acquired: np.ndarray, volumes: dict, k: int, slices) -> dict:
    """{row name: [(image at slice j, image at j + f) for j in slices]}, f = :func:`between_fraction`
    (the fine slice half way to the next, or the nearest one before it for odd k): the acquired
    stack (at j + f, linear's rebuild (1 - f) slice j + f slice j+1) and each method's
    fine-grid volume (factor k); acquired (X, Y, Z) and volumes {method: (X, Y, M)}."""
    z = acquired.shape[-1]
    if any(not 0 <= j < z - 1 for j in slices):
        raise ValueError(f"slices {list(slices)}: each needs a next slice in a stack of {z}")
    f = between_fraction(k)
    rows = {"acquired | linear": [(acquired[..., j], (1 - f) * acquired[..., j] + f * acquired[..., j + 1])
                                  for j in slices]}
    for method, volume in volumes.items():
        expected = (z - 1) * k + 1 + 2 * (k // 2)
        if volume.shape[-1] != expected:
            raise ValueError(f"{method}: {volume.shape[-1]} fine slices, expected {expected} for {z} slices, k={k}")
        rows[method] = [(volume[..., acquired_index(j, k)], volume[..., acquired_index(j, k) + k // 2])
                        for j in slices]
    return rows


def generated_slices_panel(acquired: np.ndarray, volumes: dict, k: int, path, slices=None, title: str = "") -> None:
    """Write the grid of :func:`panel_rows` (columns in pairs: slice j and the one after), images in
    the model range [-1, 1]; slices default to :func:`slice_columns`."""
    slices = slice_columns(acquired.shape[-1]) if slices is None else list(slices)
    rows = panel_rows(acquired, volumes, k, slices)
    fig = Figure(figsize=(1.5 * 2 * len(slices), 1.6 * len(rows) + 0.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), 2 * len(slices), squeeze=False)
    for r, (name, pairs) in enumerate(rows.items()):
        for c, (at, between) in enumerate(pairs):
            for half, image in enumerate((at, between)):
                ax = axes[r, 2 * c + half]
                ax.imshow(np.asarray(image).T, cmap="gray", vmin=-1, vmax=1, origin="lower")
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"slice {slices[c]}" + (f" + {between_fraction(k):.2g}" if half else ""), fontsize=8)
            if c == 0:
                axes[r, 0].set_ylabel(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)


def generated_slices_figure(results, path, methods=None, subject: str | None = None, phase: str = "ED",
                            title: str = "") -> str:
    """The panel of :func:`generated_slices_panel` for a subject of a results folder (default:
    the first one that every generative method reconstructed with images) at ED or ES; returns
    the subject drawn."""
    layout = Layout(results)
    recon = layout.results / "recon"
    image_name = f"image_{phase.lower()}.nii.gz"
    if methods is None:
        methods = sorted(p.name for p in recon.iterdir() if any(p.glob(f"*/{image_name}")))
    if not methods:
        raise FileNotFoundError(f"no generative reconstructions with images under {recon}")
    if subject is None:
        common = set.intersection(*({p.parent.name for p in (recon / m).glob(f"*/{image_name}")} for m in methods))
        if not common:
            raise FileNotFoundError(f"no subject reconstructed by all of {methods}")
        subject = sorted(common)[0]
    volumes, grids = {}, set()
    for method in methods:
        files = layout.recon(method, subject, images=True)
        record = json.loads(files["record"].read_text())
        grids.add((record["frames"][phase], record["k"]))
        volumes[method] = load_nifti(files[f"image_{phase}"], subject)[0]
    if len(grids) != 1:
        raise ValueError(f"{subject}: the methods' records disagree on the {phase} frame or k: {sorted(grids)}")
    frame, k = grids.pop()
    image = load_nifti(layout.aligned(subject)["sa"], subject)[0]
    acquired = normalise_intensity(image)[..., frame]
    generated_slices_panel(acquired, volumes, k, path, title=f"{title} {subject} {phase}".strip())
    return subject
