"""Ingest a subject folder of NIfTI cines: validate, normalise dtypes, write the layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cinerecon.io.files import write_json
from cinerecon.io.nifti import save_nifti
from cinerecon.labels import lax_conventions
from cinerecon.io.subject import (VIEWS, check_frames_consistent, image_geometry, image_name,
                                  load_labels, load_view, validate_lax_geometry)


def _image_dtype(data: np.ndarray):
    return data.dtype if np.issubdtype(data.dtype, np.integer) else np.float32


def ingest_images(src_folder, subject: str, outputs: dict, report_path) -> dict:
    """Validate every view first, then write them: a bad subject writes nothing.

    Each view on its own (cinerecon.io.subject.load_view), then together: equal frame counts,
    and every LAX plane meets the SAX stack (validate_lax_geometry).
    """
    loaded = {view: load_view(src_folder, subject, view) for view in VIEWS}
    check_frames_consistent(subject, src_folder, {v: d.shape[3] for v, (d, _, _) in loaded.items()})
    sax, sax_affine, _ = loaded["sa"]
    for view in VIEWS[1:]:
        lax, lax_affine, _ = loaded[view]
        validate_lax_geometry(subject, Path(src_folder) / image_name(view), lax.shape, lax_affine,
                              sax.shape, sax_affine)
    report = {"subject": subject, "views": {}}
    for view, (data, affine, dt) in loaded.items():
        save_nifti(outputs[view], data, affine, dt, dtype=_image_dtype(data))
        report["views"][view] = {
            "shape": list(data.shape),
            "spacing_mm": np.linalg.norm(affine[:3, :3], axis=0).round(4).tolist(),
            "frame_interval_s": dt,
        }
    write_json(report_path, report)
    return report


def ingest_labels(src_folder, subject: str, outputs: dict, images_folder=None, lax=None) -> None:
    """Validate labels against their images' geometry (headers only) and the declared LAX
    convention, then write them as uint8 in the pipeline's values.

    lax: {view ("2ch"...): convention} (cinerecon.labels.lax_conventions; default `full`).
    A view without labels in its convention is written all background. The images (in
    `images_folder`, by default beside the labels) were validated when they were
    ingested; their pixels are not reread.
    """
    lax = lax_conventions(lax or "full")
    labels = {}
    for view in VIEWS:
        shape, affine = image_geometry(images_folder or src_folder, subject, view)
        convention = lax[view.removeprefix("la_")] if view != "sa" else "full"
        labels[view] = (load_labels(src_folder, subject, view, shape, affine, convention), affine)
    for view, (lab, affine) in labels.items():
        save_nifti(outputs[view], lab, affine, dtype=np.uint8)
