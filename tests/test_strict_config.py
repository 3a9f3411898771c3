"""Strict inputs at DAG-building time: `snakemake -n` itself fails, naming the config key (or
sheet file) and the reason. Dry runs only (about 2 s each); the checks themselves are unit-tested
in tests/test_config_checks.py."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.workflow


def snakemake(workdir, *args):  # as tests/test_workflow.py runs it
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)

TINY = yaml.safe_load((REPO / "tests/data/tiny.yaml").read_text())


def dry_run(tmp_path, cfg: dict):
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({**cfg, "results": str(tmp_path / "results")}))
    run = snakemake(tmp_path, "--configfile", str(tmp_path / "cfg.yaml"), "-n")
    return run.returncode, run.stdout + run.stderr


def test_unknown_top_level_key_fails_the_dry_run(tmp_path):
    code, out = dry_run(tmp_path, {**TINY, "evaluaton": {"splits": ["test"]}})  # a typo of `evaluation`
    assert code != 0
    assert "Error validating config file" in out and "('evaluaton' was unexpected)" in out


def test_evaluating_train_subjects_fails_the_dry_run(tmp_path):
    code, out = dry_run(tmp_path, {**TINY, "evaluation": {"splits": ["train", "test"]}})
    assert code != 0
    assert "config key evaluation.splits: must not include train" in out


def test_empty_sheet_fails_the_dry_run(tmp_path):
    pd.DataFrame(columns=["subject", "split", "has_labels"]).to_csv(tmp_path / "subjects.tsv", sep="\t", index=False)
    (tmp_path / "ukbb").mkdir()
    cohort = {"kind": "nifti", "nifti": {"root": str(tmp_path / "ukbb"), "sheet": str(tmp_path / "subjects.tsv")}}
    code, out = dry_run(tmp_path, {"cohort": cohort, "crop": TINY["crop"]})
    assert code != 0
    assert f"{tmp_path / 'subjects.tsv'}: no subjects (the sheet has no rows)" in out
