"""File-level alignment step: estimate shifts from the crops, write the aligned stack."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from cinerecon.align.correct import apply_shifts, estimate_shifts
from cinerecon.align.estimate import AlignSettings
from cinerecon.io.files import write_json, write_tsv
from cinerecon.io.nifti import frame_interval, load_nifti, save_nifti

log = logging.getLogger(__name__)


def align_subject(subject: str, method: str, sax_path, lax_paths: dict, outputs: dict,
                  sax_label_path=None, lax_label_paths: dict | None = None,
                  exclude_views=(), settings: AlignSettings | None = None) -> pd.DataFrame:
    """Estimate per-slice shifts, write the corrected SAX cine, shifts.tsv and a report.

    outputs: {"sa": path, "shifts": path, "report": path}. LAX views listed in
    `exclude_views` are left out of the estimation (held-out evaluation).
    """
    sax, affine, header = load_nifti(sax_path, subject)
    laxes = {v: load_nifti(p, subject)[:2] for v, p in lax_paths.items() if v not in exclude_views}
    sax_labels = load_nifti(sax_label_path, subject)[0] if sax_label_path else None
    lax_labels = ({v: load_nifti(p, subject)[0] for v, p in lax_label_paths.items() if v in laxes}
                  if lax_label_paths else None)
    result = estimate_shifts(method, sax, affine, laxes, sax_labels, lax_labels, settings)
    shifts = result.shifts
    spacing = np.linalg.norm(affine[:3, :2], axis=0)
    save_nifti(outputs["sa"], apply_shifts(sax, shifts, spacing), affine, frame_interval(header))
    table = pd.DataFrame({"slice": np.arange(len(shifts)), "dx_mm": shifts[:, 0],
                          "dy_mm": shifts[:, 1], "sd_mm": result.sd_mm.round(3),
                          "confidence": result.confidence, "method": method})
    write_tsv(outputs["shifts"], table)
    write_json(outputs["report"], {"subject": subject, "method": method, "views": sorted(laxes),
                                   "warnings": result.warnings,
                                   "rms_shift_mm": float(np.sqrt((shifts**2).sum(1).mean())),
                                   "uncertain_slices": [int(k) for k, c in enumerate(result.confidence)
                                                        if c in ("low", "prior")]})
    return table


def align_labels(subject: str, label_path, shifts_path, output) -> None:
    """Apply the estimated shifts to a label cine (one-hot interpolation, argmax)."""
    labels, affine, header = load_nifti(label_path, subject)
    shifts = pd.read_csv(shifts_path, sep="\t")[["dx_mm", "dy_mm"]].to_numpy()
    if len(shifts) != labels.shape[2]:
        raise ValueError(f"subject {subject}: {shifts_path}: {len(shifts)} shifts for "
                         f"{labels.shape[2]} slices")
    spacing = np.linalg.norm(affine[:3, :2], axis=0)
    save_nifti(output, apply_shifts(labels, shifts, spacing, labels=True), affine,
               frame_interval(header), dtype=np.uint8)
