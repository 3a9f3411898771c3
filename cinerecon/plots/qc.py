"""Quality-control pictures: one PNG per subject, and one overview of the cohort.

Per subject (:func:`subject_qc_figure`), four rows of panels:

a. the crop box (``crop.json``) on the full field of view of the mid SAX slice and of each
   LAX view at ED, with the heart centre the crop was built around;
b. per LAX view, the SAX/LAX intersection intensity profiles the alignment compares
   (cinerecon.align: the same lines, heart regions, slab averaging, splines and z-scoring),
   with the SAX slices as acquired (before) and resampled by the estimated shifts of
   ``shifts.tsv`` (after); each slice's shift and mismatch are printed;
c. the predicted segmentation's contours on the mid-ventricular SAX slice of the aligned
   stack at ED and ES (the frames of the segmentation record, ``cine.json``), and the LV/RV
   volume curves with ED/ES marked;
d. a reconstruction's cross-sections on every LAX plane at ED and ES (dashed), with the
   LAX view's own labels where the subject has them (solid).

A piece that is missing (an unlabelled subject's LAX labels, a subject the segmentation or a
reconstruction failed on) gives a 'not available' panel naming the reason, never an error.

Over the cohort (:func:`cohort_qc_overview`): strip plots of the estimated shifts, the LAX
Dice per method and the phenotypes, with outliers named on the plot and returned as a table.
:func:`qc_subjects` picks the bounded, deterministic subset of subjects that get a picture.

Figures use ``matplotlib.figure.Figure`` with the Agg canvas (never pyplot) and are written
atomically (cinerecon.plots.figures._save).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.transforms import blended_transform_factory

from ..align.correct import _phase_frames
from ..align.estimate import (
    AlignmentProblem,
    AlignSettings,
    _sample_coeffs,
    _zscore,
    frame_subset,
)
from ..align.lines import stack_centre
from ..batch import qc_subjects  # noqa: F401  (re-exported: the subjects that get a picture)
from ..align.region import heart_regions
from ..cohort.qc import PLAUSIBLE
from ..evaluate import phase_frame
from ..geometry import world_to_voxel
from ..io.nifti import InputError, load_nifti
from ..io.subject import label_ed_es
from ..labels import LAX_LABELS, LVC, SAX_LABELS
from ..layout import LAX_VIEWS, PHASES, Layout
from ..metrics.lax import lax_intersection
from ..phenotypes import PHENOTYPE_COLUMNS, PHENOTYPE_UNITS, LabelFramesError
from .figures import COLOURS, LABEL_COLOURS, _draw_panel, _plane, _save

DPI = 100
PROFILE_GAP = 4.0      # vertical distance between slices' z-scored profiles
MAX_MISSING_NAMED = 8  # missing values named on the overview before "+n more"
# Floors of the robust SD in the overview's outlier rule: differences smaller than these
# are not QC findings however tight the cohort is.
MIN_SHIFT_SD_MM = 0.5
MIN_DICE_SD = 0.03
MIN_PHENOTYPE_SD_FRACTION = 0.05   # of the cohort median's magnitude


# ---------------------------------------------------------------- which subjects
# ---------------------------------------------------------------- inputs
@dataclass(frozen=True)
class SubjectQCInputs:
    """The files one subject's QC picture reads (a path may be None or missing: its panel
    says 'not available').

    full:       {view: image} on the full field of view (Layout.nifti)
    crop:       {view: image} cropped (Layout.crop); the alignment's inputs
    crop_record: crop.json (Layout.crop_record): the heart centre and each view's box
    shifts:     shifts.tsv of the alignment (Layout.aligned()["shifts"])
    aligned_sa: the corrected SAX cine (Layout.aligned()["sa"]), which was segmented
    seg:        predicted SAX labels (Layout.seg); seg_record: cine.json (Layout.seg_record)
    recon:      {"ED", "ES", "record"} of one reconstruction (Layout.cohort_recon(method)
                for every subject, or Layout.recon(method) for labelled ones)
    lax_labels: {view: cropped LAX labels} (Layout.crop(s, labels=True)["label_la_*"])
    """

    subject: str
    full: dict
    crop: dict
    crop_record: Path | None = None
    shifts: Path | None = None
    aligned_sa: Path | None = None
    seg: Path | None = None
    seg_record: Path | None = None
    recon: dict | None = None
    recon_method: str = ""
    lax_labels: dict | None = None

    @classmethod
    def from_layout(cls, layout: Layout, subject: str, recon_method: str | None = "linear",
                    cohort_recon: bool = True, lax_labels: bool = False) -> SubjectQCInputs:
        """Every path from the results layout. cohort_recon: the reconstruction from the
        predicted segmentation (results/cohort/recon/, every subject) rather than
        results/recon/ (from manual labels); lax_labels: the subject has manual labels."""
        views = ("sa", *LAX_VIEWS)
        crop = layout.crop(subject, labels=lax_labels)
        aligned = layout.aligned(subject)
        recon = None
        if recon_method:
            recon = (layout.cohort_recon(recon_method, subject) if cohort_recon
                     else layout.recon(recon_method, subject))
        return cls(subject=subject, full={v: layout.nifti(subject)[v] for v in views},
                   crop={v: crop[v] for v in views}, crop_record=layout.crop_record(subject),
                   shifts=aligned["shifts"], aligned_sa=aligned["sa"], seg=layout.seg(subject),
                   seg_record=layout.seg_record(subject), recon=recon, recon_method=recon_method or "",
                   lax_labels={v: crop[f"label_{v}"] for v in views[1:]} if lax_labels else None)


class _Absent(Exception):
    """A panel's input is not there (or not usable): the reason goes on the panel."""


def _path(path, what: str) -> Path:
    if path is None:
        raise _Absent(f"no {what}")
    path = Path(path)
    if not path.exists():
        raise _Absent(f"{what} missing" + ("" if path.name in what else f" ({path.name})"))
    return path


def _load(subject: str, path, what: str):
    """(array, affine) of a NIfTI that should be there; _Absent when it is not or is unreadable."""
    try:
        data, affine, _ = load_nifti(_path(path, what), subject)
    except InputError as exc:
        raise _Absent(f"{what}: {exc.reason}") from exc
    return np.asarray(data), affine


def _json(path, what: str) -> dict:
    return json.loads(_path(path, what).read_text())


def _lax_views(files: dict | None) -> list[str]:
    return [v for v in (files or {}) if v != "sa"]


# ---------------------------------------------------------------- intersection profiles
def read_shifts(path) -> tuple[np.ndarray, str]:
    """((Z, 2) mm shifts along the SAX i, j axes, alignment method) from a shifts.tsv."""
    table = pd.read_csv(path, sep="\t").sort_values("slice")
    method = str(table["method"].iloc[0]) if "method" in table.columns and len(table) else "?"
    return table[["dx_mm", "dy_mm"]].to_numpy(dtype=float), method


def intersection_profiles(sax: np.ndarray, sax_affine: np.ndarray, laxes: dict, shifts_mm,
                          settings: AlignSettings | None = None, lax_offsets: bool = True) -> dict:
    """The SAX/LAX intensity profiles the alignment compares, before and after its shifts.

    sax: cropped cine (X, Y, Z, T); laxes: {view: (cine (X, Y, 1, T), affine)}; shifts_mm:
    (Z, 2) estimated shifts. The lines, heart regions, frames, slab averaging and z-scoring
    are the alignment's own (cinerecon.align.estimate, method `intensity`). The LAX views'
    own in-plane offsets (which the alignment estimates but does not record) are searched
    again for the shifted stack (AlignmentProblem.search_lax_offsets) and held for both
    sides, as the alignment's relative gain does; `lax_offsets=False` compares with the
    LAX views as acquired. The mismatch is the alignment's data cost (Huber of z-scored
    profile differences over the frames it uses): per slice the mean over its lines, per
    view over the view's lines, overall over the slices.

    Returns {"frames", "mismatch_before", "mismatch_after", "slices": {k: (before, after)},
    "views": {view: {"mismatch_before", "mismatch_after", "lax_offset_mm", "lines": [per line: slice,
    position_mm, lax, before, after (ED frame, z-scored), mismatch_before, mismatch_after]}}}.
    """
    settings = settings or AlignSettings()
    shifts_mm = np.asarray(shifts_mm, dtype=float)
    n_slices, n_frames = sax.shape[2], sax.shape[3]
    if shifts_mm.shape != (n_slices, 2):
        raise ValueError(f"{len(shifts_mm)} shifts for {n_slices} SAX slices")
    frames = frame_subset(n_frames, settings.max_frames)   # always starts with ED (frame 0)
    sax_ch = sax[:, :, :, frames][..., None].astype(np.float32)
    lax_ch = {v: (img[:, :, 0, _phase_frames(frames, n_frames, img.shape[3])][..., None], aff)
              for v, (img, aff) in laxes.items()}
    regions = None
    if settings.heart_margin_mm is not None:
        regions = heart_regions(sax, np.linalg.norm(sax_affine[:3, :2], axis=0), settings.heart_margin_mm)
        regions = regions if regions.any() else None
    problem = AlignmentProblem(sax_ch, sax_affine, lax_ch, "intensity", settings, regions)
    centre = stack_centre(sax_affine, sax.shape[:2], n_slices)
    zero = np.zeros((1, 2))
    if lax_offsets and problem.informative():
        problem.lax_offsets = problem.search_lax_offsets(shifts_mm)
    views = {v: {"lines": [], "lax_offset_mm": problem.lax_offsets[i].tolist()} for i, v in enumerate(problem.views)}
    slices = {}
    for k in problem.informative():
        d = shifts_mm[k][None]
        slices[k] = (float(problem.slice_cost(k, zero)[0]), float(problem.slice_cost(k, d)[0]))
        for line in problem.lines[k]:
            vi = line.view_index
            offset = problem.lax_offsets[vi]
            lax = _sample_coeffs(problem.lax_coeffs[vi], line.lax_pixels[None] + offset @ problem.lax_step[vi])
            profiles = [_sample_coeffs(problem.sax_coeffs[vi][k], line.sax_pixels[None] + (s / problem.spacing)[:, None])
                        for s in (zero, d)]
            views[problem.views[vi]]["lines"].append({
                "slice": k, "position_mm": (line.points - centre) @ line.direction,
                "lax": _zscore(lax, (0, 3))[0, 0, 0],
                "before": _zscore(profiles[0], (0, 3))[0, 0, 0], "after": _zscore(profiles[1], (0, 3))[0, 0, 0],
                "mismatch_before": float(problem.line_cost(k, line, zero, offset)[0]),
                "mismatch_after": float(problem.line_cost(k, line, d, offset)[0])})
    for entry in views.values():
        for key in ("mismatch_before", "mismatch_after"):
            entry[key] = float(np.mean([line[key] for line in entry["lines"]])) if entry["lines"] else float("nan")
    costs = np.array(list(slices.values())) if slices else np.full((1, 2), np.nan)
    return {"frames": frames.tolist(), "slices": slices, "views": views,
            "mismatch_before": float(costs[:, 0].mean()), "mismatch_after": float(costs[:, 1].mean())}


# ---------------------------------------------------------------- panels
def _not_available(ax, title: str, reason: str) -> None:
    ax.text(0.5, 0.5, f"not available\n{reason}", ha="center", va="center", fontsize=8, color="0.35",
            wrap=True, transform=ax.transAxes)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("0.8")


def _view_name(view: str) -> str:
    return "SAX" if view == "sa" else view.removeprefix("la_")


def _crop_row(axes, inputs: SubjectQCInputs) -> dict:
    """(a) The crop box on the full field of view, ED frame."""
    views = list(inputs.full)
    try:
        record = _json(inputs.crop_record, "crop record")
    except _Absent as exc:
        for ax, view in zip(axes, views):
            _not_available(ax, f"{_view_name(view)}: crop box", str(exc))
        return {"present": False, "reason": str(exc)}
    out = {"present": True, "boxes": {}, "inside_fraction": {}, "views": {}}
    for ax, view in zip(axes, views):
        title = f"{_view_name(view)}: crop box"
        try:
            data, affine = _load(inputs.subject, inputs.full[view], f"{_view_name(view)} image")
            box = record.get("boxes", {}).get(view)
            if box is None:
                raise _Absent(f"no box for {view} in crop.json")
        except _Absent as exc:
            _not_available(ax, title, str(exc))
            out["views"][view] = False
            continue
        k = data.shape[2] // 2
        image = data[:, :, k, 0]
        blank = np.zeros(image.shape, np.uint8)
        _draw_panel(ax, image, blank, blank, "", ())
        (i0, j0), (ni, nj) = box["start"], box["size"]
        ax.add_patch(Rectangle((i0 - 0.5, j0 - 0.5), ni, nj, fill=False, color="yellow", lw=1.5))
        ci, cj, _ = world_to_voxel(affine, np.asarray(record["centre_mm"], dtype=float))
        ax.plot([ci], [cj], "+", color="yellow", ms=10, mew=1.5)
        ax.set_xlim(min(-0.5, i0 - 0.5) - 1, max(image.shape[0] - 0.5, i0 + ni - 0.5) + 1)
        ax.set_ylim(min(-0.5, j0 - 0.5) - 1, max(image.shape[1] - 0.5, j0 + nj - 0.5) + 1)
        inside = (max(0, min(i0 + ni, image.shape[0]) - max(i0, 0)) * max(0, min(j0 + nj, image.shape[1]) - max(j0, 0))
                  / float(ni * nj))
        where = f"slice {k}, " if view == "sa" else ""
        note = "" if inside >= 0.999 else f", {100 * inside:.0f}% inside"
        ax.set_title(f"{title} ({where}{ni}x{nj} px{note})", fontsize=9)
        out["boxes"][view] = {"start": [int(i0), int(j0)], "size": [int(ni), int(nj)]}
        out["inside_fraction"][view] = float(inside)
        out["views"][view] = True
        if view == "sa":
            out["mid_slice"] = int(k)
    return out


def _profile_axes(ax, lines: list, n_slices: int, which: str, shifts, colour: str) -> None:
    by_slice = {line["slice"]: line for line in lines}
    trans = blended_transform_factory(ax.transAxes, ax.transData)
    for k in range(n_slices):
        offset = -k * PROFILE_GAP
        line = by_slice.get(k)
        if line is None:
            ax.text(0.5, offset, "no line", ha="center", va="center", fontsize=6, color="0.5", transform=trans)
            continue
        x = np.asarray(line["position_mm"], dtype=float)
        order = np.argsort(x)
        x = x[order]
        gaps = np.concatenate([[False], np.diff(x) > 2.5])   # the heart region can split a line
        for values, style in ((line["lax"], {"color": "k", "lw": 0.9}), (line[which], {"color": colour, "lw": 1.1})):
            y = np.asarray(values, dtype=float)[order] + offset
            ax.plot(np.where(gaps, np.nan, x), np.where(gaps, np.nan, y), **style)
        text = f"{line[f'mismatch_{which}']:.2f}"
        if which == "after":
            text += f"  ({shifts[k][0]:+.1f}, {shifts[k][1]:+.1f})"
        ax.text(1.02, offset, text, ha="left", va="center", fontsize=6.5, transform=trans, clip_on=False)
    ax.set_yticks([-k * PROFILE_GAP for k in range(n_slices)], [str(k) for k in range(n_slices)], fontsize=7)
    ax.set_ylim(-(n_slices - 0.4) * PROFILE_GAP, 0.6 * PROFILE_GAP)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel("along the line (mm)", fontsize=7)
    ax.grid(axis="x", lw=0.3, alpha=0.5)


def _profiles_row(subfig, inputs: SubjectQCInputs, settings) -> dict:
    """(b) Intersection profiles before and after the estimated shifts, per LAX view."""
    views = _lax_views(inputs.crop)
    try:
        sax, affine = _load(inputs.subject, inputs.crop.get("sa"), "cropped SAX cine")
        shifts, method = read_shifts(_path(inputs.shifts, "shifts.tsv"))
        laxes = {}
        for v in views:
            try:
                laxes[v] = _load(inputs.subject, inputs.crop[v], f"cropped {_view_name(v)}")
            except _Absent:
                continue
        if not laxes:
            raise _Absent("no LAX view")
        if len(shifts) != sax.shape[2]:
            raise _Absent(f"{len(shifts)} shifts for {sax.shape[2]} SAX slices")
        profiles = intersection_profiles(sax, affine, laxes, shifts, settings)
        if not profiles["slices"]:
            raise _Absent("no SAX slice meets a LAX view inside the heart region")
    except _Absent as exc:
        axes = subfig.subplots(1, max(1, len(views)), squeeze=False)[0]
        for ax, view in zip(axes, views or ["LAX"]):
            _not_available(ax, f"{_view_name(view)} profiles", str(exc))
        subfig.suptitle("b. SAX/LAX intersection profiles", fontsize=11, x=0.01, ha="left")
        return {"present": False, "reason": str(exc)}
    n = sax.shape[2]
    grid = subfig.subplots(1, 2 * len(views), sharey=True, squeeze=False)[0]
    out = {"present": True, "method": method, "frame": 0, "shifts_mm": shifts.round(3).tolist(),
           "mismatch_before": profiles["mismatch_before"], "mismatch_after": profiles["mismatch_after"],
           "views": {}}
    for i, view in enumerate(views):
        before, after = grid[2 * i], grid[2 * i + 1]
        entry = profiles["views"].get(view)
        if entry is None:
            for ax, when in ((before, "before"), (after, "after")):
                _not_available(ax, f"{_view_name(view)} {when}", "view not available")
            out["views"][view] = {"present": False}
            continue
        _profile_axes(before, entry["lines"], n, "before", shifts, "tab:red")
        _profile_axes(after, entry["lines"], n, "after", shifts, "tab:blue")
        before.set_title(f"{_view_name(view)} as acquired\nmismatch {entry['mismatch_before']:.3f}", fontsize=9)
        after.set_title(f"{_view_name(view)} after shifts\nmismatch {entry['mismatch_after']:.3f}", fontsize=9)
        out["views"][view] = {"present": True, "slices": [line["slice"] for line in entry["lines"]],
                              "mismatch_before": entry["mismatch_before"], "mismatch_after": entry["mismatch_after"],
                              "lax_offset_mm": entry["lax_offset_mm"]}
    grid[0].set_ylabel("SAX slice (z-scored profiles)", fontsize=8)
    subfig.suptitle(
        f"b. SAX/LAX intersection profiles at ED ({method} alignment; mismatch = its data cost, "
        f"{profiles['mismatch_before']:.3f} as acquired -> {profiles['mismatch_after']:.3f} after shifts)\n"
        "black: LAX (at its fitted in-plane offset); red: SAX as acquired; blue: SAX shifted; "
        "right of each panel: mismatch per line and the slice's shift (dx, dy) mm",
        fontsize=9.5, x=0.01, ha="left")
    return out


def _segmentation_row(axes, inputs: SubjectQCInputs) -> dict:
    """(c) Predicted contours on the mid-ventricular aligned SAX slice at ED and ES; volume curves."""
    titles = ("segmentation ED", "segmentation ES", "LV/RV volume curves")
    try:
        seg, affine = _load(inputs.subject, inputs.seg, "segmentation")
        image, _ = _load(inputs.subject, inputs.aligned_sa, "aligned SAX cine")
        record = {}
        if inputs.seg_record is not None and Path(inputs.seg_record).exists():
            record = _json(inputs.seg_record, "segmentation record")
        frames = record.get("frames")
        if frames is None:
            try:
                frames = label_ed_es(inputs.subject, inputs.seg, seg, affine)
            except (InputError, LabelFramesError) as exc:
                raise _Absent(f"no ED/ES: {getattr(exc, 'reason', exc)}") from exc
        if seg.shape != image.shape:
            raise _Absent(f"segmentation {seg.shape} and image {image.shape} differ")
    except _Absent as exc:
        for ax, title in zip(axes, titles):
            _not_available(ax, title, str(exc))
        return {"present": False, "reason": str(exc)}
    lv = np.flatnonzero((seg[..., frames["ED"]] == LVC).any(axis=(0, 1)))
    k = int(np.rint((lv[0] + lv[-1]) / 2)) if lv.size else seg.shape[2] // 2
    voxels = {}
    for ax, phase in zip(axes, PHASES):
        t = int(frames[phase])
        _draw_panel(ax, image[:, :, k, t], seg[:, :, k, t], np.zeros(seg.shape[:2], np.uint8),
                    f"segmentation {phase} (frame {t}, slice {k})", tuple(SAX_LABELS))
        voxels[phase] = {name: int((seg[..., t] == value).sum()) for value, name in SAX_LABELS.items()}
    flags = list(record.get("qc_flags", []))
    ax = axes[2]
    if record.get("lv_volume_ml"):
        for key, name, colour in (("lv_volume_ml", "LV", LABEL_COLOURS[1]), ("rv_volume_ml", "RV", LABEL_COLOURS[3])):
            if record.get(key):
                curve = np.asarray(record[key], dtype=float)
                curve[curve <= 0] = np.nan   # an unsegmented frame has no volume, not zero
                ax.plot(curve, "o-" if np.isnan(curve).any() else "-", color=colour, lw=1.3, ms=3, label=name)
        for phase, style in zip(PHASES, ("-", "--")):
            ax.axvline(frames[phase], color="k", lw=0.9, ls=style, label=phase)
        ax.set_xlabel("frame", fontsize=8)
        ax.set_ylabel("volume (mL)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, frameon=False)
        ax.grid(lw=0.3, alpha=0.5)
        verdict = "QC pass" if record.get("qc_pass") else f"QC flags: {len(flags)}"
        ax.set_title(f"volume curves ({verdict})", fontsize=9)
        if flags:
            ax.text(0.02, 0.02, "\n".join(flags[:4]) + ("\n..." if len(flags) > 4 else ""), fontsize=6,
                    color="tab:red", transform=ax.transAxes, va="bottom")
    else:
        _not_available(ax, titles[2], "no segmentation record")
    return {"present": True, "frames": {p: int(frames[p]) for p in PHASES}, "slice": k,
            "voxels": voxels, "qc_flags": flags}


def _recon_row(axes, inputs: SubjectQCInputs) -> dict:
    """(d) The reconstruction's cross-sections on every LAX plane at ED and ES."""
    views = _lax_views(inputs.crop)
    method = inputs.recon_method or "reconstruction"
    titles = [f"{_view_name(v)} {p} {method}" for p in PHASES for v in views]
    if not views:
        _not_available(axes[0], method, "no LAX view")
        return {"present": False, "reason": "no LAX view"}
    try:
        recon = inputs.recon or {}
        volumes = {p: _load(inputs.subject, recon.get(p), f"{method} {p}") for p in PHASES}
        record = {}
        for source in (recon.get("record"), inputs.seg_record):
            if source is not None and Path(source).exists():
                record = json.loads(Path(source).read_text())
                if "frames" in record:
                    break
        if "frames" not in record or "n_frames" not in record:
            raise _Absent("no ED/ES frames (recon.json)")
    except _Absent as exc:
        for ax, title in zip(axes, titles):
            _not_available(ax, title, str(exc))
        return {"present": False, "reason": str(exc)}
    # each view's cine and labels read once, for both phases
    laxes, lax_labels = {}, {}
    for view in views:
        try:
            laxes[view] = _load(inputs.subject, inputs.crop[view], f"cropped {_view_name(view)}")
        except _Absent as exc:
            laxes[view] = exc
        path = (inputs.lax_labels or {}).get(view)
        if path is not None and Path(path).exists():
            try:
                lax_labels[view] = _load(inputs.subject, path, f"{_view_name(view)} labels")[0]
            except _Absent:  # unreadable labels: the reconstruction is drawn alone
                pass
    out = {"present": True, "method": method, "views": {}}
    axes = iter(axes)
    for phase in PHASES:
        volume, affine = volumes[phase]
        for view in views:
            ax = next(axes)
            title = f"{_view_name(view)} {phase} {method}"
            if isinstance(laxes[view], _Absent):
                _not_available(ax, title, str(laxes[view]))
                out["views"].setdefault(view, {})[phase] = {"present": False}
                continue
            lax, lax_affine = laxes[view]
            t = phase_frame(record["frames"][phase], record["n_frames"], lax.shape[3])
            labels, has_labels = np.zeros(lax.shape[:2], np.uint8), False
            if view in lax_labels:
                plane = lax_labels[view]
                labels, has_labels = _plane(plane[:, :, 0, t], "LAX labels"), bool(plane[:, :, 0, t].any())
            sampled, covered, _ = lax_intersection(volume, affine, labels, lax_affine)
            recon_plane = np.where(covered, sampled, 0).astype(np.uint8)
            shown = sorted((set(np.unique(labels).tolist()) | set(np.unique(recon_plane).tolist())) - {0})
            _draw_panel(ax, lax[:, :, 0, t], labels, recon_plane, f"{title} (frame {t})", shown)
            if not has_labels:
                ax.text(0.02, 0.02, "no LAX labels", fontsize=6.5, color="w", transform=ax.transAxes)
            out["views"].setdefault(view, {})[phase] = {"present": True, "frame": int(t), "lax_labels": has_labels,
                                           "recon_pixels": int((recon_plane > 0).sum()),
                                           "covered_fraction": float(covered.mean())}
    return out


def subject_qc_figure(inputs: SubjectQCInputs, out_png, settings: AlignSettings | None = None) -> dict:
    """One subject's QC picture (PNG): crop boxes, intersection profiles, segmentation,
    reconstruction cross-sections (see the module's docstring).

    settings: the alignment's settings (the SAX slice thickness, frames, heart margin), so
    the profiles are the ones it compared. Returns what was drawn: {"subject", "crop",
    "profiles", "segmentation", "recon"}, each with "present" (and "reason" when absent);
    profiles carry the printed shifts and the mismatch before and after them, recon its
    views as {view: {phase: ...}}. Plain JSON types throughout.
    """
    n_lax = len(_lax_views(inputs.crop))
    fig = Figure(figsize=(max(16.0, 2.6 * 2 * n_lax), 19.0), layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(f"QC {inputs.subject}", fontsize=14, fontweight="bold")
    rows = fig.subfigures(4, 1, height_ratios=[3.6, 6.6, 3.6, 3.8], hspace=0.01)

    rows[0].suptitle("a. crop box (yellow) on the full field of view at ED; + heart centre", fontsize=10,
                     x=0.01, ha="left")
    crop = _crop_row(rows[0].subplots(1, max(1, len(inputs.full)), squeeze=False)[0], inputs)
    profiles = _profiles_row(rows[1], inputs, settings)
    rows[2].suptitle("c. predicted segmentation on the aligned SAX stack (mid-ventricular slice)",
                     fontsize=10, x=0.01, ha="left")
    segmentation = _segmentation_row(rows[2].subplots(1, 3, squeeze=False)[0], inputs)
    rows[3].suptitle(f"d. {inputs.recon_method or 'reconstruction'} cross-sections on the LAX planes "
                     "(dashed) with the LAX labels (solid)", fontsize=10, x=0.01, ha="left")
    recon = _recon_row(rows[3].subplots(1, max(1, 2 * n_lax), squeeze=False)[0], inputs)
    handles = [Line2D([], [], color=LABEL_COLOURS[v], lw=1.5, label=name) for v, name in LAX_LABELS.items()]
    rows[3].legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False, fontsize=8)
    _save(fig, out_png, dpi=DPI)
    return {"subject": inputs.subject, "crop": crop, "profiles": profiles, "segmentation": segmentation,
            "recon": recon}


# ---------------------------------------------------------------- cohort overview
def read_shift_tables(paths: dict) -> pd.DataFrame:
    """{subject: shifts.tsv} -> one long table with a `subject` column (missing files skipped)."""
    frames = [pd.read_csv(p, sep="\t").assign(subject=s) for s, p in paths.items() if Path(p).exists()]
    if not frames:
        return pd.DataFrame(columns=["subject", "slice", "dx_mm", "dy_mm"])
    out = pd.concat(frames, ignore_index=True)
    return out[["subject", *[c for c in out.columns if c != "subject"]]]


def shift_summary(shifts: pd.DataFrame) -> pd.DataFrame:
    """Per subject: RMS and largest slice shift (mm), from per-slice dx_mm, dy_mm."""
    if not len(shifts):
        return pd.DataFrame(columns=["subject", "rms_shift_mm", "max_shift_mm"])
    size = np.hypot(shifts["dx_mm"].astype(float), shifts["dy_mm"].astype(float))
    grouped = size.groupby(shifts["subject"].astype(str), sort=False)
    return pd.DataFrame({"rms_shift_mm": grouped.apply(lambda s: float(np.sqrt((s**2).mean()))),
                         "max_shift_mm": grouped.max()}).rename_axis("subject").reset_index()


def robust_centre_scale(values) -> tuple[float, float]:
    """(median, 1.4826 MAD) of the finite values: a robust mean and SD. With MAD 0 the
    mean absolute deviation (x 1.2533) stands in; (NaN, NaN) without values."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if not x.size:
        return float("nan"), float("nan")
    centre = float(np.median(x))
    scale = 1.4826 * float(np.median(np.abs(x - centre)))
    if scale <= 0:
        scale = 1.2533 * float(np.mean(np.abs(x - centre)))
    return centre, scale


def robust_z(values, min_scale: float = 0.0) -> np.ndarray:
    """(x - median) / max(1.4826 MAD, min_scale): a robust z-score (NaN stays NaN; with no
    spread at all every z is 0). The floor keeps a tight cluster (20 Dice values within
    0.01) from calling an ordinary value an outlier.

    >>> robust_z([100, 110, 120, 130, 900]).round(1).tolist()
    [-1.3, -0.7, 0.0, 0.7, 52.6]
    """
    x = np.asarray(values, dtype=float)
    centre, scale = robust_centre_scale(x)
    scale = max(scale, min_scale) if np.isfinite(scale) else scale
    if not scale > 0:
        return np.where(np.isfinite(x), 0.0, np.nan)
    return (x - centre) / scale


def find_outliers(values: pd.Series, quantity: str, threshold: float = 3.0, side: str = "both",
                  n_outliers: int = 5, plausible=None, min_scale: float = 0.0) -> pd.DataFrame:
    """Subjects whose value lies beyond median +- threshold robust SDs (robust_z, its scale
    at least min_scale), on `side` (both, high, low), at most n_outliers of them, the
    farthest first; then every subject whose value is missing. values: indexed by subject.
    Columns: quantity, subject, value, why."""
    values = values.astype(float)
    z = pd.Series(robust_z(values.to_numpy(), min_scale), index=values.index)
    beyond = {"both": z.abs() > threshold, "high": z > threshold, "low": z < -threshold}[side]
    picked = z[beyond].abs().sort_values(ascending=False, kind="stable").index[:n_outliers]
    rows = []
    for subject in picked:
        why = f"robust z {z[subject]:+.1f} (beyond {threshold:g})"
        if plausible is not None and not plausible[0] <= values[subject] <= plausible[1]:
            why += f"; outside plausible [{plausible[0]:g}, {plausible[1]:g}]"
        rows.append({"quantity": quantity, "subject": str(subject), "value": float(values[subject]), "why": why})
    for subject in values.index[values.isna()]:
        rows.append({"quantity": quantity, "subject": str(subject), "value": float("nan"), "why": "missing"})
    return pd.DataFrame(rows, columns=["quantity", "subject", "value", "why"])


def _label_positions(y: list[float], span: float) -> list[float]:
    """Label heights near `y` (sorted order kept) at least 7% of the span apart."""
    gap = 0.07 * span
    order = np.argsort(y)
    placed = np.asarray(y, dtype=float)[order].copy()
    for i in range(1, len(placed)):
        placed[i] = max(placed[i], placed[i - 1] + gap)
    out = np.empty(len(y))
    out[order] = placed
    return out.tolist()


def _strip(ax, x0: float, values: pd.Series, outliers: pd.DataFrame, threshold: float, colour: str,
           failed=None, min_scale: float = 0.0) -> None:
    """Jittered points of one distribution at x0, its median, the robust band, outliers named."""
    values = values.astype(float).dropna()
    if not len(values):
        ax.text(x0, 0.5, "no data", ha="center", va="center", fontsize=8, color="0.5",
                transform=blended_transform_factory(ax.transData, ax.transAxes))
        return
    rng = np.random.default_rng(0)
    jitter = rng.uniform(-0.22, 0.22, len(values))
    x = values.to_numpy()
    centre, scale = robust_centre_scale(x)
    scale = max(scale, min_scale)
    if scale > 0:
        ax.fill_between([x0 - 0.3, x0 + 0.3], centre - threshold * scale, centre + threshold * scale,
                        color=colour, alpha=0.08, lw=0)
    ax.plot([x0 - 0.3, x0 + 0.3], [centre, centre], color="k", lw=1.2)
    bad = np.zeros(len(values), bool) if failed is None else values.index.isin(failed)
    ax.scatter(x0 + jitter[~bad], x[~bad], s=12, color=colour, alpha=0.55, lw=0)
    if bad.any():
        ax.scatter(x0 + jitter[bad], x[bad], s=22, color="tab:orange", marker="x", lw=1.0)
    named = outliers[outliers["value"].astype(float).notna()]
    if len(named):
        span = max(np.ptp(x), 1e-9)
        heights = _label_positions(named["value"].tolist(), span)
        for (_, row), h in zip(named.iterrows(), heights):
            i = values.index.get_loc(row["subject"])
            ax.scatter([x0 + jitter[i]], [row["value"]], s=30, facecolor="none", edgecolor="tab:red", lw=1.2)
            ax.annotate(row["subject"], (x0 + jitter[i], row["value"]), xytext=(x0 + 0.34, h), fontsize=7,
                        color="tab:red", va="center", arrowprops={"arrowstyle": "-", "color": "tab:red", "lw": 0.6})


def _missing_note(ax, outliers: pd.DataFrame) -> None:
    missing = outliers.loc[outliers["why"] == "missing", "subject"].tolist()
    if missing:
        names = ", ".join(missing[:MAX_MISSING_NAMED]) + (f" +{len(missing) - MAX_MISSING_NAMED}"
                                                           if len(missing) > MAX_MISSING_NAMED else "")
        ax.text(0.02, 0.98, f"missing: {names}", fontsize=6.5, color="tab:orange", va="top", wrap=True,
                transform=ax.transAxes)


def _by_subject(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame.groupby(frame["subject"].astype(str), sort=False)[column].first()


def cohort_qc_overview(shifts: pd.DataFrame, dice: pd.DataFrame, phenotypes: pd.DataFrame, out_png,
                       n_outliers: int = 5, threshold: float = 3.0, phenotype_method: str | None = "seg",
                       phenotype_columns=None, dice_column: str = "dice") -> pd.DataFrame:
    """The cohort's QC overview (PNG) and the outliers it names.

    Inputs (long tables; any may be empty):
    - shifts: per SAX slice, the alignment's shifts.tsv with a subject column (see
      read_shift_tables): subject, slice, dx_mm, dy_mm (sd_mm, confidence, method unused).
      Summarised per subject as rms_shift_mm and max_shift_mm (shift_summary).
    - dice: LAX-intersection rows (eval/lax/{method}/{s}.parquet, evaluate.LAX_ROW_COLUMNS):
      subject, method, dice (phase, view, structure...); a subject's value per method is the
      mean of its finite Dice rows (`dice_column`: dice, or dice_full).
    - phenotypes: tables/cohort_phenotypes (cohort.table.TABLE_COLUMNS) or phenotype rows:
      subject, the phenotype columns (PHENOTYPE_COLUMNS: LVEDV, LVESV, LVSV, LVEF, LVM, RVEDV,
      RVESV, RVSV, RVEF), and optionally method (rows of `phenotype_method` are used) and
      qc_pass (QC-flagged subjects drawn as orange crosses).

    An outlier lies beyond median +- threshold robust SDs (1.4826 MAD; robust_z), the SD
    floored (MIN_SHIFT_SD_MM, MIN_DICE_SD, MIN_PHENOTYPE_SD_FRACTION of the median) so a
    tight cohort does not name ordinary subjects: shifts
    on the high side, Dice on the low side, phenotypes on both; at most n_outliers per
    quantity, the farthest first, each named on its plot. Missing values (a failed
    subject's phenotypes) are listed too, with why = "missing".

    Returns the outlier table: quantity (rms_shift_mm, max_shift_mm, dice:{method},
    {phenotype}), subject, value, why.
    """
    panels = []   # (title, unit, [(label, values, outliers, side)], failed)
    table = []
    summary = shift_summary(shifts)
    for column, title in (("rms_shift_mm", "RMS slice shift"), ("max_shift_mm", "largest slice shift")):
        values = summary.set_index("subject")[column] if len(summary) else pd.Series(dtype=float)
        found = find_outliers(values, column, threshold, "high", n_outliers, min_scale=MIN_SHIFT_SD_MM)
        table.append(found)
        panels.append((f"{title} per subject", "mm", [("", values, found, MIN_SHIFT_SD_MM)], None))

    dice_parts = []
    if len(dice) and dice_column in dice.columns:
        rows = dice[np.isfinite(dice[dice_column].astype(float))]
        for method, group in rows.groupby("method", sort=False):
            values = group.groupby(group["subject"].astype(str), sort=False)[dice_column].mean()
            found = find_outliers(values, f"dice:{method}", threshold, "low", n_outliers, min_scale=MIN_DICE_SD)
            table.append(found)
            dice_parts.append((str(method), values, found, MIN_DICE_SD))
    panels.append((f"LAX Dice per method (subject mean of {dice_column})", "", dice_parts, None))

    rows = phenotypes
    if len(rows) and phenotype_method is not None and "method" in rows.columns:
        rows = rows[rows["method"] == phenotype_method]
    columns = [c for c in (phenotype_columns or PHENOTYPE_COLUMNS) if c in rows.columns]
    failed = None
    if len(rows) and "qc_pass" in rows.columns:
        failed = set(rows.loc[rows["qc_pass"] == False, "subject"].astype(str))
    for column in columns:
        values = _by_subject(rows, column).astype(float)
        floor = MIN_PHENOTYPE_SD_FRACTION * abs(float(values.median())) if values.notna().any() else 0.0
        found = find_outliers(values, column, threshold, "both", n_outliers, PLAUSIBLE.get(column), floor)
        table.append(found)
        unit = PHENOTYPE_UNITS.get(column, "")
        panels.append((column + (f" ({phenotype_method})" if phenotype_method and "method" in rows.columns else ""),
                       unit, [("", values, found, floor)], failed))

    ncols = 5
    nrows = int(np.ceil((len(panels) + 1) / ncols))
    fig = Figure(figsize=(3.5 * ncols, 3.3 * nrows + 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    n_subjects = len(set(summary["subject"]) | set(rows["subject"].astype(str) if len(rows) else []))
    fig.suptitle(f"Cohort QC overview ({n_subjects} subjects): outliers beyond median ± {threshold:g} robust SD "
                 f"(1.4826 MAD) named in red, at most {n_outliers} per quantity", fontsize=11)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    outliers = pd.concat(table, ignore_index=True) if table else pd.DataFrame(columns=["quantity", "subject",
                                                                                       "value", "why"])
    # per-slice shift histogram first: the distribution the per-subject summaries come from
    ax = axes[0]
    if len(shifts):
        size = np.hypot(shifts["dx_mm"].astype(float), shifts["dy_mm"].astype(float))
        ax.hist(size, bins=min(40, max(5, int(np.sqrt(len(size))))), color=COLOURS[0], alpha=0.7)
        ax.set_xlabel("|shift| (mm)", fontsize=8)
        ax.set_ylabel("slices", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no shifts", ha="center", va="center", color="0.5", transform=ax.transAxes)
    ax.set_title(f"estimated slice shifts ({len(shifts)} slices)", fontsize=9)
    ax.tick_params(labelsize=7)
    for ax, (title, unit, parts, failed_subjects) in zip(axes[1:], panels):
        for i, (label, values, found, floor) in enumerate(parts):
            _strip(ax, i, values, found, threshold, COLOURS[i % len(COLOURS)], failed_subjects, floor)
            if i == 0:
                _missing_note(ax, found)
        if not parts:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", color="0.5", transform=ax.transAxes)
        ax.set_xticks(range(len(parts)), [p[0] for p in parts], fontsize=8)
        ax.set_xlim(-0.6, max(len(parts), 1) - 0.4 + 0.45)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(unit, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(axis="y", lw=0.3, alpha=0.5)
    for ax in axes[1 + len(panels):]:
        ax.set_visible(False)
    handles = [Line2D([], [], color="k", lw=1.2, label="median"),
               Patch(color=COLOURS[0], alpha=0.15, label=f"median ± {threshold:g} robust SD"),
               Line2D([], [], marker="o", ls="", mfc="none", mec="tab:red", label="outlier (named)")]
    if failed:
        handles.append(Line2D([], [], marker="x", ls="", color="tab:orange", label="segmentation QC flagged"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False, fontsize=8)
    _save(fig, out_png, dpi=DPI)
    return outliers
