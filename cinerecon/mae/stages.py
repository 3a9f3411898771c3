"""The MAE's shard stages: a subject's tensor file (every subject, labelled or not), and a
test subject's rows (phenotypes, segmentation, robustness)."""

from __future__ import annotations

import logging
from pathlib import Path

from cinerecon.evaluate import label_phenotype_row
from cinerecon.io.files import write_parquet
from cinerecon.io.nifti import load_nifti
from cinerecon.labels import LA, RA
from cinerecon.layout import LAX_VIEWS, Layout
from cinerecon.mae import files as F
from cinerecon.mae.data import targets_from, write_subject
from cinerecon.mae.inputs import InputSettings, build_inputs
from cinerecon.phenotypes.atrial import atrial_phenotypes
from cinerecon.stages import Subject, frame_labels

log = logging.getLogger(__name__)
KINDS = ("phenotypes", "segmentation", "robustness", "representation")


def inputs_outputs(layout: Layout, s: Subject) -> list[Path]:
    return [layout.mae_inputs(s.id)]


def inputs_run(layout: Layout, s: Subject, settings: dict, truth: bool, directseg: bool) -> None:
    aligned, crop = layout.aligned(s.id), layout.crop(s.id, s.labelled)
    files = {"sa": aligned["sa"], "base_labels": frame_labels(layout, s), **{v: crop[v] for v in LAX_VIEWS}}
    if s.labelled:
        files.update({"label_sa": aligned["label_sa"], **{f"label_{v}": crop[f"label_{v}"] for v in LAX_VIEWS}})
    if directseg:
        files["seg_sa"] = layout.seg(s.id)
    arrays = build_inputs(s.id, files, InputSettings.from_dict(settings),
                          {v: s.lax_structures(v) for v in LAX_VIEWS} if s.labelled else None)
    label_row = None
    if s.labelled and not truth:
        try:
            label_row = label_phenotypes(s, aligned["label_sa"], crop)
        except ValueError as exc:  # labels no phenotype comes from still pre-train and segment
            log.warning("subject %s: no phenotype targets from its labels: %s", s.id, exc)
    targets, source = targets_from(layout.truth(s.id)["phenotypes"] if truth else None, label_row)
    write_subject(layout.mae_inputs(s.id), arrays, targets, source)


def label_phenotypes(s: Subject, label_sa, crop: dict) -> dict:
    """A real cohort's targets: the manual SAX labels' ventricular phenotypes and, from the LAX
    views whose labels draw an atrium, its area-length volumes (cinerecon.phenotypes.atrial)."""
    row = label_phenotype_row(s.id, label_sa).iloc[0].to_dict()
    views = {}
    for view in ("la_2ch", "la_4ch"):
        if set(s.lax_structures(view)) & {LA, RA}:
            labels, affine, _ = load_nifti(crop[f"label_{view}"], s.id)
            views[view] = (labels, affine)
    return {**row, **atrial_phenotypes(views)}


def eval_outputs(layout: Layout, s: Subject) -> list[Path]:
    return [layout.eval_mae(kind, s.id) for kind in KINDS]


def eval_run(layout: Layout, s: Subject, models: dict, settings: dict, device: str) -> None:
    rows = F.evaluate_subject(s.id, layout.mae_inputs(s.id), models, settings, device)
    for kind in KINDS:
        write_parquet(layout.eval_mae(kind, s.id), rows[kind])
