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
