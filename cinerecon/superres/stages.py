"""Gemini-GAN's shard stages: a subject reconstructed on its high-resolution grid (the
`gemini_gan` rows of the LAX, truth and phenotype tables), and every method scored against
its 3D truth (Tables 2 and 3)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cinerecon.io.files import write_parquet
from cinerecon.io.nifti import load_nifti
from cinerecon.io.subject import label_ed_es
from cinerecon.layout import Layout
from cinerecon.stages import Subject, frame_labels
from cinerecon.superres import files as F
from cinerecon.superres.data import load_stack


def subject_files(layout: Layout, s: Subject) -> dict:
    """What the file-level steps read for a subject (cinerecon.superres.files)."""
    return {"sa": layout.aligned(s.id)["sa"], "truth": layout.highres_truth(s.id),
            "phenotypes": layout.truth(s.id)["phenotypes"], "labels": frame_labels(layout, s)}


def recon_outputs(layout: Layout, s: Subject) -> list[Path]:
    return list(layout.recon("gemini_gan", s.id, images=True).values())


def recon_run(layout: Layout, s: Subject, model, settings: dict) -> None:
    """ED/ES (from the subject's labels, or the network's segmentation) reconstructed."""
    path = frame_labels(layout, s)
    labels, affine, _ = load_nifti(path, s.id)
    frames = label_ed_es(s.id, path, labels, affine)
    stack = load_stack(s.id, layout.aligned(s.id)["sa"], frames, model.config.xy_factor, model.config.z_factor)
    F.write_prediction(stack, F.predict(model, stack), layout.recon("gemini_gan", s.id, images=True),
                       layout.recon("gemini_gan", s.id)["record"], "gemini_gan")


def score_outputs(layout: Layout, s: Subject) -> list[Path]:
    return [layout.eval_superres(s.id)]


def score_run(layout: Layout, s: Subject, models: dict, settings: dict) -> None:
    """A target-domain subject: nn, linear and every network against its 3D truth (Table 2)."""
    stack, truth = F.paired_stack(s.id, subject_files(layout, s), settings)
    parts = [F.network_rows(s.id, method, F.predict(G, stack), truth) for method, G in models.items()]
    parts.append(F.interpolation_rows(s.id, stack, truth, layout.seg(s.id)))
    _write(layout, s, parts, "target")


def adapted_score_run(layout: Layout, s: Subject, model, vama, settings: dict) -> None:
    """A source-domain subject: Gemini-GAN without adaptation and after V-AMA (Table 3)."""
    stack, truth = F.paired_stack(s.id, subject_files(layout, s), settings)
    parts = [F.network_rows(s.id, "no_adaptation", F.predict(model, stack), truth)]
    if vama is not None:
        parts.append(F.network_rows(s.id, "vama", F.predict(model, stack, F.adapt_images(vama, stack)), truth))
    _write(layout, s, parts, "source")


def _write(layout: Layout, s: Subject, parts: list, domain: str) -> None:
    rows = pd.concat(parts, ignore_index=True)
    rows.insert(1, "domain", domain)
    write_parquet(layout.eval_superres(s.id), rows)
