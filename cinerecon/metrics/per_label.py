"""All segmentation metrics for every structure of a label map, as one flat row."""

from __future__ import annotations

import numpy as np

from .overlap import dice, voe
from .surface import as_spacing, surface_metrics

# Order of the metrics within each structure's block of columns.
METRIC_NAMES = ("dice", "voe", "hd", "hd95", "asd", "assd")


def per_label_metrics(pred_labels, ref_labels, labels: dict[int, str], spacing) -> dict[str, float]:
    """``{f"{metric}_{name}": value}`` for each label value/name in ``labels`` and each metric in METRIC_NAMES.

    Distances are in mm with ``spacing`` per axis; empty-structure conventions as in :mod:`cinerecon.metrics`.
    """
    pred_labels = np.asarray(pred_labels)
    ref_labels = np.asarray(ref_labels)
    if pred_labels.shape != ref_labels.shape:
        raise ValueError(f"label shapes differ: pred {pred_labels.shape} vs ref {ref_labels.shape}")
    spacing = as_spacing(spacing, pred_labels.ndim)
    row: dict[str, float] = {}
    for value, name in labels.items():
        pred, ref = pred_labels == value, ref_labels == value
        values = {"dice": dice(pred, ref), "voe": voe(pred, ref), **surface_metrics(pred, ref, spacing)}
        row.update({f"{metric}_{name}": float(values[metric]) for metric in METRIC_NAMES})
    return row


def structure_rows(subject: str, method: str, phase: str, pred_labels, ref_labels, spacing,
                   labels: dict[int, str] | None = None) -> list[dict]:
    """Long-form rows (subject, method, phase, structure, *METRIC_NAMES), one per structure:
    the papers' Table 1 between a predicted and a manual label stack (3D, ``spacing`` in mm)."""
    from cinerecon.labels import SAX_LABELS

    labels = SAX_LABELS if labels is None else labels
    row = per_label_metrics(pred_labels, ref_labels, labels, spacing)
    return [{"subject": subject, "method": method, "phase": phase, "structure": name,
             **{metric: row[f"{metric}_{name}"] for metric in METRIC_NAMES}} for name in labels.values()]
