"""The cohort report: per-subject evaluation rows -> paper tables and figures."""

from __future__ import annotations

from pathlib import Path

from cinerecon.labels import SAX_LABELS
from cinerecon.phenotypes import PHENOTYPE_COLUMNS
from cinerecon.tables.cohort import (
    lax_dice_numeric,
    lax_dice_table,
    phenotype_agreement,
    read_rows,
    truth_metrics_numeric,
    truth_metrics_table,
    with_split,
    write_table,
)


def report_names(with_truth: bool, with_seg: bool = False, with_images: bool = False) -> dict:
    """Stems of the tables and names of the figures the report writes."""
    tables = [f"lax_dice_{s}" for s in SAX_LABELS.values()]
    tables += [f"lax_dice_whole_{s}" for s in SAX_LABELS.values()]
    tables += ["lax_dice_numeric", "phenotypes", "phenotype_agreement"]
    figures = ["dice_lax.png", "bland_altman.png"]
    if with_truth:
        tables += ["truth_metrics", "truth_metrics_numeric"]
        figures.append("dice_truth.png")
    if with_seg:
        tables += ["seg_metrics", "seg_metrics_numeric"]
    if with_images:
        tables += ["image_quality", "heldout_slices"]
    return {"tables": tables, "figures": figures}


def write_report(lax_paths, truth_paths, phenotype_paths, tables_dir, figures_dir,
                 method_order=None, sax_paths=(), image_paths=(), heldout_paths=(), splits=None) -> None:
    """Write every cohort table (parquet, csv, md) and figure (png).

    splits: {subject: split} of the sheet; the per-subject `phenotypes` table and the numeric
    per-method tables then carry a `split` column (cinerecon.tables.cohort.with_split). The
    paper-shaped tables (lax_dice_{structure}, truth_metrics, seg_metrics) keep their columns.
    """
    # imported here: the Snakefile imports this module for report_names, and matplotlib
    # would add ~0.7 s to every DAG build
    from cinerecon.metrics.heldout import heldout_summary
    from cinerecon.metrics.per_label import METRIC_NAMES
    from cinerecon.plots import bland_altman, dice_boxplot

    tables_dir, figures_dir = Path(tables_dir), Path(figures_dir)
    lax = read_rows(lax_paths)
    for structure in SAX_LABELS.values():  # both protocols (cinerecon.metrics.lax)
        write_table(lax_dice_table(lax, structure, method_order), tables_dir / f"lax_dice_{structure}")
        write_table(lax_dice_table(lax, structure, method_order, protocol="whole"),
                    tables_dir / f"lax_dice_whole_{structure}")
    write_table(with_split(lax_dice_numeric(lax, "LVC", method_order), lax, splits), tables_dir / "lax_dice_numeric")
    dice_boxplot(lax, figures_dir / "dice_lax.png", method_order=method_order)

    phen = read_rows(phenotype_paths)
    write_table(with_split(phen, phen, splits), tables_dir / "phenotypes")
    reference = "truth" if (phen["method"] == "truth").any() else "labels"
    write_table(with_split(phenotype_agreement(phen, reference, method_order=method_order), phen, splits),
                tables_dir / "phenotype_agreement")
    # the methods (and order) of the agreement table, whose numbers the panels print
    bland_altman(phen, reference, list(PHENOTYPE_COLUMNS), figures_dir / "bland_altman.png", methods=method_order)

    if sax_paths:  # the papers' Table 1: 2D segmentation of the acquired SAX stack
        sax = read_rows(sax_paths)
        write_table(truth_metrics_table(sax, method_order, METRIC_NAMES), tables_dir / "seg_metrics")
        write_table(with_split(truth_metrics_numeric(sax, method_order, METRIC_NAMES), sax, splits),
                    tables_dir / "seg_metrics_numeric")
    if image_paths:  # PSNR / SSIM of generated acquired slices against the input
        quality = read_rows(image_paths)
        summary = quality.groupby("method")[["psnr", "ssim"]].agg(["mean", "std"])
        summary.columns = [f"{m}_{stat}" for m, stat in summary.columns]
        write_table(with_split(summary.reset_index(), quality, splits), tables_dir / "image_quality")
    if heldout_paths:  # each interior SAX slice rebuilt from its two neighbours
        heldout = read_rows(heldout_paths)
        write_table(with_split(heldout_summary(heldout, method_order), heldout, splits), tables_dir / "heldout_slices")
    if truth_paths:
        truth = read_rows(truth_paths)
        write_table(truth_metrics_table(truth, method_order), tables_dir / "truth_metrics")
        write_table(with_split(truth_metrics_numeric(truth, method_order), truth, splits),
                    tables_dir / "truth_metrics_numeric")
        dice_boxplot(truth, figures_dir / "dice_truth.png", method_order=method_order)


def report_inputs(layout, eval_manifests: dict, reference_manifests, directseg_manifests,
                  with_truth: bool, slice_manifests=(), heldout_manifests=(), sax_manifests=()) -> dict:
    """Per-subject row files of the subjects whose evaluation succeeded, from the manifests.

    eval_manifests: {method: manifest paths of its `evaluate` shards}; slice_manifests:
    shards/slices-{method}/{shard}.tsv of the generative methods (Table 1, PSNR/SSIM);
    heldout_manifests: shards/heldout-{method}/{shard}.tsv (held-out-slice rows);
    sax_manifests: shards/segrows-{method}/{shard}.tsv (Table 1 rows only, e.g. W+SegNet).
    """
    from cinerecon.batch import ok_subjects

    files = {"lax": [], "truth": [], "phenotypes": [], "sax": [], "image": [], "heldout": []}
    for path in sax_manifests:
        method = Path(path).parent.name.removeprefix("segrows-")
        files["sax"] += [layout.eval_sax(method, s) for s in ok_subjects([path])]
    for path in heldout_manifests:
        method = Path(path).parent.name.removeprefix("heldout-")
        files["heldout"] += [layout.eval_heldout(method, s) for s in ok_subjects([path])]
    for path in slice_manifests:
        method = Path(path).parent.name.removeprefix("slices-")
        for s in ok_subjects([path]):
            files["sax"].append(layout.eval_sax(method, s))
            files["image"].append(layout.eval_image(method, s))
    for method, paths in eval_manifests.items():
        for s in ok_subjects(paths):
            files["lax"].append(layout.eval_lax(method, s))
            files["phenotypes"].append(layout.phenotypes(method, s))
            if with_truth:
                files["truth"].append(layout.eval_truth(method, s))
    for s in ok_subjects(reference_manifests):
        files["phenotypes"].append(layout.phenotypes("labels", s))
        if with_truth:
            files["phenotypes"].append(layout.phenotypes("truth", s))
    for s in ok_subjects(directseg_manifests):
        files["sax"].append(layout.eval_sax("directseg", s))
        files["phenotypes"].append(layout.phenotypes("directseg", s))
    return files
