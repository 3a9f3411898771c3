"""File-level evaluation steps: LAX intersections, truth metrics and phenotypes per subject."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from cinerecon.io.nifti import load_nifti
from cinerecon.labels import SAX_LABELS
from cinerecon.metrics.lax import lax_dice_rows, lax_intersection
from cinerecon.metrics.truth import truth_rows
from cinerecon.phenotypes import (
    PHENOTYPE_COLUMNS,
    LabelFramesError,
    ed_es_frames,
    labelled_frames,
    phenotypes,
    phenotypes_from_cine,
)

PHASES = ("ED", "ES")


def phase_frame(frame: int, n_source: int, n_target: int) -> int:
    """Frame of the same cardiac phase in a cine with another frame count."""
    return int(round(frame * n_target / n_source)) % n_target


def _load_recon(subject, recon_paths: dict):
    return {phase: load_nifti(recon_paths[phase], subject)[:2] for phase in PHASES}


def lax_phase_frames(lax_labels: np.ndarray, lax_affine, record: dict) -> dict:
    """{phase: frame of the LAX label cine} to compare with the reconstruction's ED/ES.

    A densely labelled LAX cine is read at the same cardiac phase as the SAX frames; one
    labelled at its own ED and ES only (UK Biobank) at those frames (ed_es_frames: its LV
    area), since its ES may fall a frame away from the SAX stack's.
    """
    labelled = labelled_frames(lax_labels)
    if len(labelled) == lax_labels.shape[3]:
        return {p: phase_frame(record["frames"][p], record["n_frames"], lax_labels.shape[3]) for p in PHASES}
    try:
        return ed_es_frames(lax_labels, lax_affine)
    except LabelFramesError:
        return {}


LAX_ROW_COLUMNS = ["subject", "method", "phase", "view", "structure", "dice", "dice_full", "coverage", "n_ref_pixels"]


def lax_rows(subject: str, method: str, recon_paths: dict, record_path, lax_label_paths: dict,
             structures: dict | None = None) -> pd.DataFrame:
    """Dice of the reconstruction's intersections with every LAX view at ED and ES.

    structures: {view: {value: name}} the manual labels of each view carry (by default
    everything); only SAX structures among them are scored, and a view or a phase without
    any (UK Biobank's atria-only labels; a frame left unlabelled) gives no rows.
    """
    record = json.loads(open(record_path).read())
    rows = []
    recon = None
    for view, path in lax_label_paths.items():
        carried = None if structures is None else set(structures[view])
        if carried is not None and not carried & set(SAX_LABELS):
            continue
        recon = recon or _load_recon(subject, recon_paths)
        lax, lax_affine, _ = load_nifti(path, subject)
        frames = lax_phase_frames(lax, lax_affine, record)
        for phase in PHASES:
            frame = frames.get(phase)
            if frame is None or not lax[:, :, 0, frame].any():
                continue  # this phase is not labelled on this view
            volume, affine = recon[phase]
            rows += lax_dice_rows(volume, affine, lax[:, :, 0, frame], lax_affine, carried, subject=subject,
                                  method=method, phase=phase, view=view.removeprefix("la_"))
    return pd.DataFrame(rows, columns=LAX_ROW_COLUMNS)


def truth_metric_rows(subject: str, method: str, recon_paths: dict, truth_paths: dict) -> pd.DataFrame:
    recon = _load_recon(subject, recon_paths)
    rows = []
    for phase in PHASES:
        truth, truth_affine, _ = load_nifti(truth_paths[phase], subject)
        volume, affine = recon[phase]
        rows += truth_rows(volume, affine, truth, truth_affine, subject=subject, method=method, phase=phase)
    return pd.DataFrame(rows)


def recon_phenotype_row(subject: str, method: str, recon_paths: dict) -> pd.DataFrame:
    recon = _load_recon(subject, recon_paths)
    (ed, affine), (es, _) = recon["ED"], recon["ES"]
    return pd.DataFrame([{"subject": subject, "method": method, **phenotypes(ed, es, affine)}])


def label_phenotype_row(subject: str, label_path) -> pd.DataFrame:
    """Phenotypes of the acquired SAX label stack itself (disc summation): method 'labels'."""
    labels, affine, _ = load_nifti(label_path, subject)
    row = phenotypes_from_cine(labels, affine)
    row.pop("es_frame", None)
    return pd.DataFrame([{"subject": subject, "method": "labels", **row}])


def truth_phenotype_row(subject: str, truth_json) -> pd.DataFrame:
    truth = json.loads(open(truth_json).read())
    return pd.DataFrame([{"subject": subject, "method": "truth",
                          **{c: float(truth[c]) for c in PHENOTYPE_COLUMNS}}])


def lax_overlay_panels(subject: str, method: str, recon_ed_path, lax_images: dict, lax_labels: dict):
    """(image, reference, reconstruction, title) per LAX view at ED, for overlay figures."""
    volume, affine, _ = load_nifti(recon_ed_path, subject)
    panels = []
    for view in lax_labels:
        image, lax_affine, _ = load_nifti(lax_images[view], subject)
        labels, _, _ = load_nifti(lax_labels[view], subject)
        sampled, covered, reference = lax_intersection(volume, affine, labels[:, :, 0, 0], lax_affine)
        panels.append((image[:, :, 0, 0], reference, sampled * covered,
                       f"{subject} {view.removeprefix('la_')} {method}"))
    return panels
