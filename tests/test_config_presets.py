"""Presets (config/presets/*.yaml) and the effective configuration of a run.

A run's configuration is its preset's file with the user's --configfile/--config deep-merged
over it, nothing else (cinerecon.config_presets): demo values never reach a `preset: paper`
run, and every run that executes jobs records what it used under {results}/config/.
Unit tests first; the tests marked `workflow` run the real Snakefile (a few seconds each).
"""

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from cinerecon.config_checks import ConfigError
from cinerecon.config_presets import (
    available_presets,
    config_sources,
    deep_merge,
    effective_config_text,
    resolve_config,
    user_config,
    write_effective_config,
)

REPO = Path(__file__).resolve().parents[1]
PRESETS = REPO / "config" / "presets"
SCHEMA = str(REPO / "config" / "schema.yaml")
DEMO = yaml.safe_load((PRESETS / "demo.yaml").read_text())
PAPER = yaml.safe_load((PRESETS / "paper.yaml").read_text())


def leaves(tree, prefix=()):
    """{(key, subkey, ...): value} of every non-mapping value in a nested mapping."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(leaves(value, prefix + (key,)))
        else:
            out[prefix + (key,)] = value
    return out


def paper_user(tmp_path) -> dict:
    """A real-data config as a user writes it: the paper preset, a NIfTI cohort, a results folder."""
    (tmp_path / "ukbb").mkdir(exist_ok=True)  # the root must exist; planning needs no image file
    rows = [("1000001", "train", "yes"), ("1000002", "val", "yes"), ("1000003", "test", "yes"),
            ("1000004", "test", "no")]
    (tmp_path / "subjects.tsv").write_text("subject\tsplit\thas_labels\n" + "".join("\t".join(r) + "\n" for r in rows))
    return {"preset": "paper", "results": str(tmp_path / "results"),
            "cohort": {"kind": "nifti", "nifti": {"root": str(tmp_path / "ukbb"), "sheet": str(tmp_path / "subjects.tsv")}}}


# ---- the merge -----------------------------------------------------------------------------
def test_deep_merge_merges_mappings_and_replaces_everything_else():
    base = {"a": {"b": 1, "c": [1, 2, 3], "d": {"e": 1, "f": 2}}, "g": [0, 10], "h": "x", "i": {"j": 1}}
    over = {"a": {"c": [9], "d": {"f": 3}}, "g": [5], "h": None, "i": 7, "k": {"new": True}}
    assert deep_merge(base, over) == {"a": {"b": 1, "c": [9], "d": {"e": 1, "f": 3}}, "g": [5], "h": None,
                                      "i": 7, "k": {"new": True}}


def test_deep_merge_replaces_lists_whole_and_copies_its_inputs():
    base = {"deeprecon": {"inversion": {"steps": [0, 1000, 10000], "lr": 0.01}}}
    over = {"deeprecon": {"inversion": {"steps": [0, 5]}}}
    out = deep_merge(base, over)
    assert out == {"deeprecon": {"inversion": {"steps": [0, 5], "lr": 0.01}}}
    out["deeprecon"]["inversion"]["steps"].append(99)
    out["deeprecon"]["inversion"]["lr"] = 1.0
    assert base == {"deeprecon": {"inversion": {"steps": [0, 1000, 10000], "lr": 0.01}}}
    assert over == {"deeprecon": {"inversion": {"steps": [0, 5]}}}


def test_a_mapping_replaces_a_scalar_and_back():
    assert deep_merge({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}
    assert deep_merge({"a": {"b": 2}}, {"a": 1}) == {"a": 1}


# ---- choosing a preset -------------------------------------------------------------------------
def test_no_user_config_is_the_demo_preset():
    assert resolve_config({}, PRESETS) == DEMO
    assert resolve_config(None, PRESETS) == DEMO
    assert list(resolve_config({}, PRESETS))[0] == "preset"


def test_config_yaml_as_a_configfile_is_the_demo_exactly():
    user = yaml.safe_load((REPO / "config/config.yaml").read_text())
    assert user == {"preset": "demo"}
    assert resolve_config(user, PRESETS) == resolve_config({}, PRESETS)


def test_the_demo_preset_holds_the_demo_values_of_today():
    """config/presets/demo.yaml is the former config/config.yaml (plus the values its keys
    fell back to in rules/common.smk, written out)."""
    cfg = resolve_config({}, PRESETS)
    assert cfg["results"] == "results" and cfg["cohort"]["kind"] == "synthetic"
    assert cfg["cohort"]["synthetic"]["n_subjects"] == 10 and cfg["cohort"]["synthetic"]["seed"] == 2026
    assert cfg["batch"] == {"subjects_per_shard": 5}
    assert cfg["crop"] == {"sax_size": [96, 96], "lax_size": [112, 112]}
    assert (cfg["segmentation"]["model"], cfg["segmentation"]["epochs"], cfg["segmentation"]["lr"]) == ("tiny", 60, 0.002)
    d = cfg["deeprecon"]
    assert (d["preset"], d["gan_steps"], d["encoder_steps"], d["seg_epochs"]) == ("tiny", 120, 100, 60)
    assert d["image_size"] == 64 and cfg["dmcvr"]["model"]["image_size"] == 64  # generative models at 64 px
    assert d["seg_epochs"] == cfg["segmentation"]["epochs"]  # Seg on G(w*) trains like DirectSeg, as in the paper
    assert d["inversion"] == {"steps": [0, 10], "lr": 0.02, "batch_size": 256}
    m = cfg["dmcvr"]
    assert (m["preset"], m["model"], m["steps"], m["ddim_steps"], m["inference_batch_size"]) == ("tiny", {"width": 8, "image_size": 64}, 100, 4, 16)
    assert m["refine"] == 1  # one fixed-point refinement: 4 DDIM steps round-trip at ~22 dB, not ~14


def test_unknown_preset_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"^config key preset: unknown preset 'papr'; use one of \['demo', 'paper'\]"):
        resolve_config({"preset": "papr"}, PRESETS)
    with pytest.raises(ConfigError, match=r"^config key preset: unknown preset None"):
        resolve_config({"preset": None}, PRESETS)


@pytest.mark.parametrize("missing", ["cohort", "results"])
def test_paper_preset_without_cohort_or_results_is_refused_naming_the_key(tmp_path, missing):
    user = paper_user(tmp_path)
    del user[missing]
    with pytest.raises(ConfigError, match=rf"^config key {missing}: missing: the 'paper' preset \(.*paper.yaml\) "
                                          rf"has no {missing}, so your config \(--configfile\) must set it"):
        resolve_config(user, PRESETS)


def test_schema_names_exactly_the_preset_files():
    schema = yaml.safe_load(Path(SCHEMA).read_text())
    assert schema["properties"]["preset"]["enum"] == available_presets(PRESETS) == ["demo", "paper"]
    assert schema["additionalProperties"] is False


def test_a_preset_file_must_name_itself(tmp_path):
    (tmp_path / "demo.yaml").write_text("preset: paper\nresults: r\ncohort: {kind: synthetic}\n")
    with pytest.raises(ConfigError, match="demo.yaml: says `preset: paper` but is the 'demo' preset"):
        resolve_config({}, tmp_path)


# ---- the presets themselves ---------------------------------------------------------------------
def test_paper_preset_sets_every_key_the_demo_sets_and_no_cohort():
    """So a paper run needs no demo value, and a key added to the demo must get a paper value."""
    user_owned = {"results", "cohort"}
    demo = {k for k in leaves(DEMO) if k[0] not in user_owned and k[:2] != ("dmcvr", "model")}
    assert demo - set(leaves(PAPER)) == set()
    assert not user_owned & set(PAPER)
    assert PAPER["dmcvr"]["model"] == {}  # the published denoiser, no demo width override


def test_paper_preset_budgets_are_paper_sized(tmp_path):
    cfg = resolve_config(paper_user(tmp_path), PRESETS)
    validate(cfg, SCHEMA)
    assert cfg["segmentation"]["model"] == "paper" and cfg["segmentation"]["epochs"] >= 100
    d = cfg["deeprecon"]
    assert d["preset"] == "paper" and d["gan_steps"] >= 100_000 and d["encoder_steps"] >= 10_000
    assert d["inversion"]["steps"] == [0, 1000, 10000]  # DeepRecon Table 1
    assert d["frame_stride"] == 1  # the paper pre-trains on every frame
    assert d["image_size"] is None  # G at the crop's size, not the demo's 64 px
    m = cfg["dmcvr"]
    assert m["preset"] == "paper" and m["steps"] >= 100_000 and m["ddim_steps"] >= 100 and "width" not in m["model"]
    assert m["inference_batch_size"] >= 64 and cfg["batch"]["subjects_per_shard"] >= 50
    assert "image_size" not in m["model"]  # the paper denoiser's published 256 px (crops resampled to it)
    assert all(cfg[k]["precision"] == "bf16" for k in ("segmentation", "deeprecon", "dmcvr"))
    assert cfg["deeprecon"]["pretrain_splits"] == cfg["dmcvr"]["pretrain_splits"] == ["train", "val"]
    assert "tiny" not in yaml.safe_dump(cfg)


@pytest.mark.parametrize("name", ["ukbb_nifti.example.yaml", "ukbb_dicom.example.yaml"])
def test_example_configs_choose_the_paper_preset_and_set_only_what_a_run_must(name):
    user = yaml.safe_load((REPO / "config" / name).read_text())
    # the shard size is the cohort's choice too (the whole-cohort DICOM example: 500)
    assert user["preset"] == "paper" and {"preset", "results", "cohort"} <= set(user) <= {
        "preset", "results", "cohort", "batch"}
    cfg = resolve_config(user, PRESETS)
    validate(cfg, SCHEMA)
    assert {k: v for k, v in cfg.items() if k not in user} == {
        k: v for k, v in PAPER.items() if k != "preset" and k not in user}


# ---- what the workflow reads from Snakemake ---------------------------------------------------------
class Settings:  # the part of snakemake.settings.types.ConfigSettings that is read
    configfiles = [Path("/data/a.yaml"), Path("/data/b.yaml")]
    config = {"preset": "paper"}
    overwrite_config = {"preset": "paper", "results": "/scratch/r", "batch": {"subjects_per_shard": 50}}


class Workflow:
    config_settings = Settings


def test_user_config_is_exactly_what_snakemake_was_given():
    user = user_config(Workflow)
    assert user == Settings.overwrite_config
    user["batch"]["subjects_per_shard"] = 1  # a copy
    assert Settings.overwrite_config["batch"]["subjects_per_shard"] == 50
    assert user_config(object()) == {}
    assert config_sources(Workflow) == ["--configfile /data/a.yaml", "--configfile /data/b.yaml",
                                        "--config preset='paper'"]


# ---- the record of a run -------------------------------------------------------------------------
def test_effective_config_is_written_whole_and_every_run_keeps_its_copy(tmp_path):
    cfg = resolve_config({"results": str(tmp_path / "results")}, PRESETS)
    started = datetime(2026, 3, 1, 12, 0, 5, tzinfo=timezone.utc)
    latest, kept = write_effective_config(cfg, cfg["results"], ["--configfile /x.yaml"], started)
    assert latest == tmp_path / "results/config/effective.yaml"
    assert kept == tmp_path / "results/config/runs/2026-03-01T12-00-05Z.yaml"
    assert yaml.safe_load(latest.read_text()) == cfg == yaml.safe_load(kept.read_text())
    assert "--configfile /x.yaml" in latest.read_text().splitlines()[2]
    # the record is a --configfile that repeats the run
    assert resolve_config(yaml.safe_load(latest.read_text()), PRESETS) == cfg
    # a second run (even in the same second) keeps the first one's record
    other = {**cfg, "batch": {"subjects_per_shard": 2}}
    latest2, kept2 = write_effective_config(other, cfg["results"], [], started)
    assert kept2.name == "2026-03-01T12-00-05Z-1.yaml" and yaml.safe_load(kept.read_text()) == cfg
    assert yaml.safe_load(latest2.read_text()) == other
    assert sorted(p.name for p in (tmp_path / "results/config").rglob("*")) == [
        "2026-03-01T12-00-05Z-1.yaml", "2026-03-01T12-00-05Z.yaml", "effective.yaml", "runs"]


def test_effective_config_text_names_the_preset_and_the_users_files():
    text = effective_config_text({"preset": "paper", "results": "r"}, [], datetime(2026, 1, 2, tzinfo=timezone.utc))
    assert "# started: 2026-01-02T00:00:00Z" in text
    assert "# preset: paper (config/presets/paper.yaml)" in text and "none (the preset alone)" in text


# ---- through the real Snakefile ---------------------------------------------------------------------
def snakemake(workdir, *args, snakefile=REPO / "Snakefile"):  # as tests/test_workflow.py runs it
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(workdir),
           "--cores", "1", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)


# What rules/common.smk made of the config (its section dicts fall back to in-code defaults
# for keys the config lacks, and must find none lacking).
SECTIONS = {"BATCH": "batch", "ALIGN": "align", "SEG": "segmentation", "DEEPRECON": "deeprecon",
            "DMCVR": "dmcvr", "RECON": "recon", "EVALUATION": "evaluation",
            "COHORT_PHENOTYPES": "cohort_phenotypes"}


@pytest.mark.workflow
def test_a_paper_run_gets_the_paper_preset_for_every_key_it_does_not_set(tmp_path):
    """The real Snakefile, dry run, with a config that sets only preset, results and cohort:
    every key of the configuration the workflow resolved is the paper preset's (leaf by leaf),
    and rules/common.smk added no fallback of its own."""
    user = paper_user(tmp_path)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(user))
    dump = tmp_path / "resolved.json"
    names = ", ".join(f"{k!r}: {k}" for k in [*SECTIONS, "MOTION", "INVERSION_STEPS", "DIFFUSION_METHODS"])
    (tmp_path / "Snakefile").write_text(  # the workflow, plus a dump of what it resolved
        f'include: "{REPO / "Snakefile"}"\n\n'
        f"import json\n\n"
        f'with open("{dump}", "w") as handle:\n'
        f"    json.dump({{'config': config, {names}}}, handle)\n")
    run = snakemake(tmp_path, "all", "-n", "--configfile", str(tmp_path / "cfg.yaml"), snakefile=tmp_path / "Snakefile")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "train_stylegan2" in run.stdout and "train_diffusion" in run.stdout  # the methods are planned
    resolved = json.loads(dump.read_text())
    cfg = resolved["config"]
    assert cfg["preset"] == "paper" and cfg["results"] == user["results"]
    got = {k: v for k, v in leaves(cfg).items() if k[0] not in ("preset", "results", "cohort")}
    want = {k: v for k, v in leaves(PAPER).items() if k[0] != "preset"}
    assert got == want
    for name, section in SECTIONS.items():
        assert resolved[name] == cfg[section], name
    assert resolved["MOTION"] == cfg["deeprecon"]["motion"]
    assert resolved["INVERSION_STEPS"] == [0, 1000, 10000] and resolved["DIFFUSION_METHODS"] == ["dmcvr", "diffae"]
    assert cfg["dmcvr"]["steps"] >= 100_000 and cfg["dmcvr"]["ddim_steps"] >= 100 and cfg["dmcvr"]["model"] == {}
    assert cfg["deeprecon"]["gan_steps"] >= 100_000 and cfg["deeprecon"]["encoder_steps"] >= 10_000
    assert not (tmp_path / "results").exists()  # a dry run writes nothing


@pytest.mark.workflow
def test_a_paper_run_without_a_cohort_fails_naming_the_key(tmp_path):
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({"preset": "paper", "results": str(tmp_path / "results")}))
    run = snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "cfg.yaml"))
    assert run.returncode != 0
    assert "config key cohort: missing: the 'paper' preset" in run.stdout + run.stderr


@pytest.mark.workflow
def test_a_run_records_its_effective_config_and_a_dry_run_does_not(tmp_path):
    """A demo run of one cheap rule (the synthetic subjects sheet): the dry run writes nothing;
    the run writes {results}/config/effective.yaml and a per-run copy, holding the demo
    preset's values for every key the user did not set."""
    results = tmp_path / "results"
    user = {"results": str(results), "cohort": {"synthetic": {"n_subjects": 3}}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(user))
    target = str(results / "synthetic/subjects.tsv")
    dry = snakemake(tmp_path, target, "-n", "--configfile", str(tmp_path / "cfg.yaml"))
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert not results.exists()
    run = snakemake(tmp_path, target, "--configfile", str(tmp_path / "cfg.yaml"))
    assert run.returncode == 0, run.stderr[-3000:]
    effective = results / "config/effective.yaml"
    runs = list((results / "config/runs").glob("*.yaml"))
    assert len(runs) == 1 and runs[0].read_text() == effective.read_text()
    text = effective.read_text()
    assert f"--configfile {tmp_path / 'cfg.yaml'}" in text.splitlines()[2]
    cfg = yaml.safe_load(text)
    assert cfg == resolve_config(user, PRESETS)
    changed = {k: v for k, v in leaves(cfg).items() if leaves(DEMO).get(k) != v}
    assert changed == {("results",): str(results), ("cohort", "synthetic", "n_subjects"): 3}
