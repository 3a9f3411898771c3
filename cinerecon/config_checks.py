"""Strict checks of the configuration against itself and the subjects sheet (DAG-building time).

config/schema.yaml (Snakemake's `validate`) refuses unknown keys, wrong types and out-of-range
values. What a schema cannot say is checked here: a synthetic split whose fractions sum to 0,
an input folder or file that does not exist, and a method switched on without the labelled
subjects it needs (which the rules would otherwise switch off without a word). Every message
starts with the config key to change: ``config key evaluation.splits: ...``.

`check_cohort` runs before the sheet is built (cinerecon.io.sheet.cohort_sheet); `check_config`
once the sheet is known (rules/common.smk).
"""

from __future__ import annotations

import logging
from pathlib import Path

from cinerecon.io.sheet import SPLITS
from cinerecon.mae.presets import tiling_problem

DEFAULT_SYNTHETIC_SPLITS = {"train": 0.6, "val": 0.2, "test": 0.2}


class ConfigError(ValueError):
    """A configuration the pipeline cannot (or would silently not) run as asked."""


def config_error(key: str, reason: str) -> ConfigError:
    return ConfigError(f"config key {key}: {reason}")


def _given(tree: dict | None, *keys: str) -> bool:
    """Whether `tree` (the user's own config) sets the nested key."""
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return False
        tree = tree[key]
    return True


# ---- cohort: before the sheet is built -----------------------------------------------------
def check_synthetic_splits(splits: dict | None) -> dict:
    """The synthetic split fractions (defaults when None): non-negative numbers, sum > 0."""
    if splits is None:
        return dict(DEFAULT_SYNTHETIC_SPLITS)
    key = "cohort.synthetic.splits"
    if not isinstance(splits, dict):
        raise config_error(key, f"must be a mapping such as {DEFAULT_SYNTHETIC_SPLITS}, got {splits!r}")
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise config_error(key, f"unknown split(s) {unknown}; use {list(SPLITS)}")
    for name, value in splits.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise config_error(f"{key}.{name}", f"must be a fraction >= 0, got {value!r}")
    if sum(splits.values()) <= 0:
        raise config_error(key, f"the fractions sum to 0 ({splits}); give at least one split a "
                                f"positive fraction, e.g. {DEFAULT_SYNTHETIC_SPLITS}")
    return dict(splits)


def check_cohort(cohort: dict) -> None:
    """The cohort block: its kind's own block is there, split fractions can be drawn, and the
    input folders and the subjects sheet exist (relative paths: from the working directory)."""
    kind = cohort.get("kind")
    if kind not in ("synthetic", "nifti", "ukbb_dicom"):
        raise config_error("cohort.kind", f"must be synthetic, nifti or ukbb_dicom, got {kind!r}")
    block = cohort.get(kind)
    if not isinstance(block, dict):
        raise config_error(f"cohort.{kind}", f"missing: cohort.kind is {kind!r}, so the cohort needs "
                                            f"a `{kind}:` block")
    if kind == "synthetic":
        check_synthetic_splits(block.get("splits"))
        return
    for name, required in (("root", True), ("sheet", True), ("labels_root", False)):
        value = block.get(name)
        if value is None and not required:
            continue
        key = f"cohort.{kind}.{name}"
        if not value:
            raise config_error(key, "missing (required)")
        path = Path(value)
        if name == "sheet" and not path.is_file():
            raise config_error(key, f"subjects sheet {value} does not exist (or is not a file; "
                                    f"relative paths are read from {Path.cwd()})")
        if name != "sheet" and not path.is_dir():
            raise config_error(key, f"folder {value} does not exist (relative paths are read from {Path.cwd()})")


# ---- the configuration against the sheet ----------------------------------------------------
def _labelled_per_split(sheet) -> dict[str, int]:
    labelled = sheet.loc[sheet["has_labels"].astype(bool), "split"]
    return {s: int((labelled == s).sum()) for s in SPLITS}


def check_config(config: dict, sheet, user_config: dict | None = None) -> list[str]:
    """Refuse a configuration that would silently do less than it says; return notes.

    config: the effective configuration (a preset with the user's keys merged over it,
    cinerecon.config_presets). sheet: the cohort's subjects (columns subject, split, has_labels).
    user_config: exactly the keys the user set (Snakemake's --configfile/--config values; {}
    for none; None: all of `config`). What the user asked for and the cohort cannot give is an
    error naming the key. What only the preset asks for (a preset enables DeepRecon, DMCVR and
    the test-split evaluation for any cohort) is, where the cohort lacks the subjects it needs,
    left off with a note naming the key, so a cohort without labels runs without first
    switching the preset's methods off.
    """
    user = config if user_config is None else user_config
    preset = f"the {config.get('preset', 'demo')} preset"
    notes = []
    labelled = _labelled_per_split(sheet)
    counts = ", ".join(f"{s}: {n}" for s, n in labelled.items())
    subjects = set(sheet["subject"]) if "subject" in sheet.columns else set(sheet.index)

    # evaluation: held-out subjects only, and something to evaluate when asked to
    splits = list((config.get("evaluation") or {}).get("splits", ["test"]))
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise config_error("evaluation.splits", f"unknown split(s) {unknown}; use val and/or test")
    if "train" in splits:
        raise config_error("evaluation.splits", "must not include train: the segmentation and generative "
                                                "models are fitted on the train subjects, so evaluating "
                                                "them would be biased; use val and/or test")
    if not any(labelled[s] for s in splits):
        if _given(user, "evaluation", "splits"):
            raise config_error("evaluation.splits", f"no subject with manual labels in split(s) {splits}, so "
                                                    f"nothing would be evaluated (labelled subjects per split: "
                                                    f"{counts}); label some or leave evaluation out")
        if _given(config, "evaluation", "splits"):
            notes.append(f"config key evaluation.splits: nothing evaluated: {preset} evaluates split(s) "
                         f"{splits}, and no subject in them has manual labels ({counts})")

    # segmentation network: trained on labelled train (val picks the epoch), or given
    seg = {"enabled": True, "checkpoint": None, **(config.get("segmentation") or {})}
    seg_on = bool(seg["enabled"])
    if seg_on:
        checkpoint = seg["checkpoint"]
        if checkpoint:
            if not Path(checkpoint).is_file():
                raise config_error("segmentation.checkpoint", f"file {checkpoint} does not exist (relative "
                                                              f"paths are read from {Path.cwd()})")
        elif not any(labelled.values()):
            raise config_error("segmentation.checkpoint", "segmentation is enabled but no checkpoint is given "
                                                          "and no subject has manual labels to train one "
                                                          "(sheet column has_labels); give a pre-trained "
                                                          "model.pt or set segmentation.enabled: false")
        elif not (labelled["train"] and labelled["val"]):
            missing = " and ".join(s for s in ("train", "val") if not labelled[s])
            raise config_error("segmentation.enabled", f"training the segmentation network needs labelled "
                                                       f"train and val subjects, and there are no labelled "
                                                       f"{missing} subjects ({counts}); label some, give "
                                                       f"segmentation.checkpoint, or set segmentation.enabled: false")

    def needs(key: str, method: str, requirements: list[str]) -> None:
        """`key` (a method's `enabled`) is on: refuse it, or note it off, if requirements are unmet."""
        if not requirements:
            return
        reason = f"{method} needs {' and '.join(requirements)}"
        if _given(user, *key.split(".")):
            raise config_error(key, f"{reason}; set {key}: false")
        notes.append(f"config key {key}: off for this cohort although {preset} enables it: {reason} "
                     f"(set {key}: false to say so)")

    def lacking(*wanted: str) -> list[str]:
        out = [] if seg_on else ["the segmentation network (segmentation.enabled is false)"]
        out += [f"labelled {s} subjects (there are none; {counts})" for s in wanted if not labelled[s]]
        return out

    deeprecon = config.get("deeprecon") or {}
    if deeprecon.get("enabled", False):
        needs("deeprecon.enabled", "DeepRecon", lacking("train", "val"))
    if (config.get("dmcvr") or {}).get("enabled", False):
        needs("dmcvr.enabled", "DMCVR", lacking("train"))
    if (config.get("gemini_gan") or {}).get("enabled", False):
        truth = [] if (config.get("cohort") or {}).get("kind") == "synthetic" else \
            ["paired 3D truth to train on (the synthetic cohort's; cinerecon.synth.highres)"]
        needs("gemini_gan.enabled", "Gemini-GAN", lacking() + truth)

    mae = config.get("mae") or {}
    if mae.get("enabled", False):
        splits = mae.get("finetune_splits", ["train", "val"])
        tuned = [] if any(labelled[s] for s in splits) else \
            [f"labelled {' or '.join(splits)} subjects to fine-tune on (there are none; {counts})"]
        needs("mae.enabled", "the whole-heart MAE", lacking() + tuned)
        problem = tiling_problem(mae)
        if problem:
            raise config_error(*problem)

    # the motion-adaptation pair must be subjects of the sheet
    for end in ("source", "target"):
        subject = (deeprecon.get("motion") or {}).get(end)
        if subject is not None and str(subject) not in subjects:
            raise config_error(f"deeprecon.motion.{end}", f"subject {subject!r} is not in the subjects sheet")
    return notes


def check_workflow_config(config: dict, sheet, workflow=None) -> list[str]:
    """`check_config` from a Snakefile: the user's keys are exactly Snakemake's --configfile/--config
    values (none given: every key is the preset's); notes go to Snakemake's log as warnings."""
    from cinerecon.config_presets import user_config

    user = None if getattr(workflow, "config_settings", None) is None else user_config(workflow)
    notes = check_config(config, sheet, user)
    for note in notes:
        logging.getLogger("snakemake.logging").warning(note)
    return notes
