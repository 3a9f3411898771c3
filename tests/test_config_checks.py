"""Strict inputs: every bad configuration, subjects sheet or split choice is refused with a
message naming the config key (or the sheet file and subject) and the reason. Fast: no
Snakemake run (config/schema.yaml is checked with snakemake.utils.validate directly)."""

import copy
import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from cinerecon.config_checks import (
    ConfigError,
    check_cohort,
    check_config,
    check_synthetic_splits,
    check_workflow_config,
)
from cinerecon.config_presets import deep_merge as merged  # a preset and a user's config, merged
from cinerecon.config_presets import resolve_config
from cinerecon.io.sheet import SheetError, cohort_sheet, parse_has_labels, read_sheet, validate_sheet
from cinerecon.phenotypes import PHENOTYPE_COLUMNS
from cinerecon.tables import with_split

REPO = Path(__file__).resolve().parents[1]
SCHEMA = str(REPO / "config/schema.yaml")
PRESETS = REPO / "config/presets"
DEMO = yaml.safe_load((PRESETS / "demo.yaml").read_text())
TINY = yaml.safe_load((REPO / "tests/data/tiny.yaml").read_text())


def schema_error(cfg: dict) -> str:
    with pytest.raises(WorkflowError) as err:
        validate(copy.deepcopy(cfg), SCHEMA)
    return str(err.value)


def sheet(rows) -> pd.DataFrame:
    """A cohort sheet as cohort_sheet returns it: [(subject, split, has_labels)]."""
    frame = pd.DataFrame(rows, columns=["subject", "split", "has_labels"])
    return frame.set_index("subject", drop=False)


FULL = sheet([("A", "train", True), ("B", "val", True), ("C", "test", True), ("D", "test", True)])


# ---- 1. unknown keys and wrong values (config/schema.yaml) ----------------------------------
def test_demo_and_test_configs_validate_alone():
    validate(copy.deepcopy(DEMO), SCHEMA)
    validate(copy.deepcopy(TINY), SCHEMA)


@pytest.mark.parametrize("path", ["config/config.yaml", "config/demo_dicom.yaml", "config/ukbb_nifti.example.yaml",
                                  "config/ukbb_dicom.example.yaml", "tests/data/tiny.yaml"])
def test_shipped_configs_validate_over_their_preset(path):
    """A --configfile is merged over the preset it names (demo unless it says paper)."""
    validate(resolve_config(yaml.safe_load((REPO / path).read_text()), PRESETS), SCHEMA)


def test_every_schema_object_refuses_unknown_keys():
    missing = []

    def walk(node, where):
        if isinstance(node, dict):
            kinds = node.get("type") if isinstance(node.get("type"), list) else [node.get("type")]
            if ("object" in kinds or "properties" in node) and "additionalProperties" not in node:
                missing.append(where or "<top level>")
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(yaml.safe_load(Path(SCHEMA).read_text()), "")
    assert missing == []


def test_unknown_top_level_key_is_named():
    assert "'bogus' was unexpected" in schema_error({**TINY, "bogus": 1})


def test_unknown_batch_key_is_named():
    text = schema_error({**TINY, "batch": {"subjects_per_shard": 2, "shard_size": 3}})
    assert "'shard_size' was unexpected" in text and "['batch']" in text


@pytest.mark.parametrize("value, reason", [(0, "less than the minimum of 1"), (-3, "less than the minimum of 1"),
                                           ("10", "is not of type 'integer'"), (2.5, "is not of type 'integer'")])
def test_bad_subjects_per_shard_is_refused(value, reason):
    text = schema_error({**TINY, "batch": {"subjects_per_shard": value}})
    assert reason in text and "subjects_per_shard" in text


def test_unknown_split_name_in_evaluation_is_refused_by_the_schema():
    text = schema_error({**TINY, "evaluation": {"splits": ["holdout"]}})
    assert "'holdout' is not one of ['train', 'val', 'test']" in text


def test_negative_synthetic_split_fraction_is_refused_by_the_schema():
    cfg = merged(TINY, {"cohort": {"synthetic": {"splits": {"train": -0.5, "val": 0.5, "test": 1.0}}}})
    assert "-0.5 is less than the minimum of 0" in schema_error(cfg)


def test_unknown_diffusion_override_is_refused_and_the_known_ones_exist():
    from cinerecon.models.diffusion import DiffusionConfig

    assert "'widht' was unexpected" in schema_error(merged(TINY, {"dmcvr": {"model": {"widht": 8}}}))
    allowed = yaml.safe_load(Path(SCHEMA).read_text())["properties"]["dmcvr"]["properties"]["model"]["properties"]
    assert set(allowed) <= {f.name for f in dataclasses.fields(DiffusionConfig)}


def test_unknown_phenotype_in_qc_thresholds_is_refused():
    cfg = {**TINY, "cohort_phenotypes": {"qc": {"plausible": {"LVEDv": [30, 400]}}}}
    assert "'LVEDv' is not one of" in schema_error(cfg)
    plausible = yaml.safe_load(Path(SCHEMA).read_text())["properties"]["cohort_phenotypes"]["properties"]["qc"]
    assert plausible["properties"]["plausible"]["propertyNames"]["enum"] == list(PHENOTYPE_COLUMNS)


def test_repeated_inversion_step_counts_are_refused():
    assert "has non-unique elements" in schema_error(merged(TINY, {"deeprecon": {"inversion": {"steps": [0, 5, 5]}}}))


# ---- 2.-4. the subjects sheet -----------------------------------------------------------------
def write(tmp_path, text, name="subjects.tsv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("value", ["Y", "yes", "TRUE", "1", " n ", "no", "0", ""])
def test_has_labels_accepts_yes_no_true_false_1_0_and_blank(value):
    frame = pd.DataFrame({"subject": ["A"], "split": ["train"], "has_labels": [value]})
    assert bool(parse_has_labels(frame, "s.tsv").iloc[0]) == (value.strip().lower() in ("y", "yes", "true", "1"))


@pytest.mark.parametrize("value", ["maybe", "2", "labelled", "x"])
def test_has_labels_refuses_anything_else_naming_file_and_subject(value):
    frame = pd.DataFrame({"subject": ["A", "B"], "split": ["train", "val"], "has_labels": ["yes", value]})
    with pytest.raises(SheetError, match=rf"s.tsv: column has_labels must be yes/no.*'B': '{value}'"):
        parse_has_labels(frame, "s.tsv")


def test_has_labels_1_with_blank_cells_is_read_as_text_not_float(tmp_path):
    path = write(tmp_path, "subject\tsplit\thas_labels\nA\ttrain\t1\nB\tval\t\n")
    assert list(parse_has_labels(read_sheet(path), str(path))) == [True, False]


def test_blank_subject_id_names_file_and_line(tmp_path):
    path = write(tmp_path, "subject\tsplit\nA\ttrain\n\tval\nC\ttest\n")
    with pytest.raises(SheetError, match=rf"{path}: blank subject ID on line\(s\) \[3\]"):
        read_sheet(path)


def test_whitespace_subject_id_is_blank_too():
    with pytest.raises(SheetError, match=r"blank subject ID on line\(s\) \[2\]"):
        validate_sheet(pd.DataFrame({"subject": ["  ", "B"], "split": ["train", "val"]}), "s.tsv")


def test_na_like_subject_ids_stay_ids(tmp_path):
    path = write(tmp_path, "subject,split\nNA,train\nnull,test\n", "subjects.csv")
    assert list(read_sheet(path)["subject"]) == ["NA", "null"]


def test_blank_split_names_file_subject_and_line(tmp_path):
    path = write(tmp_path, "subject\tsplit\nA\ttrain\nB\t\n")
    with pytest.raises(SheetError, match=rf"{path}: blank split for subject\(s\) {{'B': 3}}"):
        read_sheet(path)


def test_sheet_without_rows_is_refused(tmp_path):
    path = write(tmp_path, "subject\tsplit\thas_labels\n")
    with pytest.raises(SheetError, match=rf"{path}: no subjects \(the sheet has no rows\)"):
        read_sheet(path)


def test_empty_sheet_file_is_refused(tmp_path):
    path = write(tmp_path, "")
    with pytest.raises(SheetError, match=rf"{path}: empty file"):
        read_sheet(path)


def test_missing_columns_name_what_was_found(tmp_path):
    path = write(tmp_path, "subject,split\nA,train\n")  # comma-separated, but .tsv
    with pytest.raises(SheetError, match=r"missing column\(s\) \['split', 'subject'\]; found \['subject,split'\]"):
        read_sheet(path)


def test_duplicate_ids_are_refused():
    frame = pd.DataFrame({"subject": ["A", "A"], "split": ["train", "test"]})
    with pytest.raises(SheetError, match=r"s.tsv: subjects listed more than once \(splits must not overlap\): "
                                         r"\{'A': \['test', 'train'\]\}"):
        validate_sheet(frame, "s.tsv")


@pytest.mark.parametrize("bad", ["A 1", "A/1", "é1", "a.b"])
def test_ids_with_bad_characters_are_refused(bad):
    with pytest.raises(SheetError, match=r"s.tsv: subject IDs must match"):
        validate_sheet(pd.DataFrame({"subject": [bad], "split": ["train"]}), "s.tsv")


def test_unknown_split_values_are_refused():
    with pytest.raises(SheetError, match=r"s.tsv: unknown split value\(s\) \['Test'\]"):
        validate_sheet(pd.DataFrame({"subject": ["A"], "split": ["Test"]}), "s.tsv")


# ---- 5. synthetic split fractions ------------------------------------------------------------
@pytest.mark.parametrize("splits", [{"train": 0, "val": 0, "test": 0}, {"train": 0.0}, {}])
def test_synthetic_split_fractions_summing_to_zero_are_refused(splits):
    with pytest.raises(ConfigError, match=r"^config key cohort.synthetic.splits: the fractions sum to 0"):
        check_synthetic_splits(splits)


def test_negative_or_unknown_synthetic_split_is_refused():
    with pytest.raises(ConfigError, match=r"^config key cohort.synthetic.splits.val: must be a fraction >= 0"):
        check_synthetic_splits({"train": 1, "val": -1})
    with pytest.raises(ConfigError, match=r"^config key cohort.synthetic.splits: unknown split\(s\) \['tests'\]"):
        check_synthetic_splits({"train": 1, "tests": 1})


def test_zero_synthetic_splits_fail_before_drawing_the_sheet():
    cohort = merged(TINY["cohort"], {"synthetic": {"splits": {"train": 0, "val": 0, "test": 0}}})
    with pytest.raises(ConfigError, match="cohort.synthetic.splits"):  # was: ValueError: cannot convert NaN
        cohort_sheet(cohort)


# ---- 9. input paths and the cohort block -----------------------------------------------------
def nifti_cohort(tmp_path, **over):
    (tmp_path / "root").mkdir(exist_ok=True)
    write(tmp_path, "subject\tsplit\nA\ttrain\n")
    return {"kind": "nifti", "nifti": {"root": str(tmp_path / "root"), "sheet": str(tmp_path / "subjects.tsv"), **over}}


def test_missing_sheet_file_is_refused(tmp_path):
    cohort = nifti_cohort(tmp_path, sheet=str(tmp_path / "nope.tsv"))
    with pytest.raises(ConfigError, match=rf"^config key cohort.nifti.sheet: subjects sheet {tmp_path}/nope.tsv does not exist"):
        cohort_sheet(cohort)


def test_missing_root_folder_is_refused(tmp_path):
    cohort = nifti_cohort(tmp_path, root=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=rf"^config key cohort.nifti.root: folder {tmp_path}/missing does not exist"):
        cohort_sheet(cohort)


def test_missing_dicom_labels_root_is_refused(tmp_path):
    cohort = nifti_cohort(tmp_path)
    cohort = {"kind": "ukbb_dicom", "ukbb_dicom": {**cohort["nifti"], "labels_root": str(tmp_path / "labels")}}
    with pytest.raises(ConfigError, match=r"^config key cohort.ukbb_dicom.labels_root: folder .* does not exist"):
        check_cohort(cohort)


def test_cohort_kind_without_its_block_is_refused():
    with pytest.raises(ConfigError, match=r"^config key cohort.nifti: missing: cohort.kind is 'nifti'"):
        check_cohort({"kind": "nifti", "synthetic": {"n_subjects": 3, "seed": 0}})


def test_a_good_nifti_cohort_reads(tmp_path):
    assert list(cohort_sheet(nifti_cohort(tmp_path))["subject"]) == ["A"]


# ---- 6.-7. splits the configuration needs -----------------------------------------------------
@pytest.mark.parametrize("cfg", [DEMO, TINY])
def test_shipped_configs_pass(cfg):
    assert check_config(cfg, cohort_sheet(cfg["cohort"])) == []


@pytest.mark.parametrize("splits", [["train", "test"], ["train"]])
def test_evaluating_train_subjects_is_refused(splits):
    with pytest.raises(ConfigError, match=r"^config key evaluation.splits: must not include train"):
        check_config({"evaluation": {"splits": splits}}, FULL)


def test_unknown_evaluation_split_is_refused():
    with pytest.raises(ConfigError, match=r"^config key evaluation.splits: unknown split\(s\) \['holdout'\]"):
        check_config({"evaluation": {"splits": ["test", "holdout"]}}, FULL)


def test_val_may_be_evaluated():
    assert check_config({"evaluation": {"splits": ["val", "test"]}}, FULL) == []


def test_evaluation_asked_for_splits_without_labelled_subjects_is_refused():
    rows = sheet([("A", "train", True), ("B", "val", True), ("C", "test", False)])
    with pytest.raises(ConfigError, match=r"^config key evaluation.splits: no subject with manual labels in "
                                          r"split\(s\) \['test'\].*train: 1, val: 1, test: 0"):
        check_config({"evaluation": {"splits": ["test"]}}, rows)
    assert check_config({}, rows) == []  # not asked for: nothing to evaluate, no error


def test_cohort_without_labels_and_without_checkpoint_is_refused():
    rows = sheet([("A", "train", False), ("B", "val", False), ("C", "test", False)])
    with pytest.raises(ConfigError, match=r"^config key segmentation.checkpoint: segmentation is enabled but no "
                                          r"checkpoint is given and no subject has manual labels"):
        check_config({}, rows)
    assert check_config({"segmentation": {"enabled": False}}, rows) == []


def test_segmentation_without_labelled_val_subjects_is_refused():
    rows = sheet([("A", "train", True), ("B", "val", False), ("C", "test", True)])
    with pytest.raises(ConfigError, match=r"^config key segmentation.enabled: training the segmentation network "
                                          r"needs labelled train and val subjects, and there are no labelled val"):
        check_config({}, rows)


def test_segmentation_checkpoint_must_exist(tmp_path):
    rows = sheet([("A", "train", False)])
    with pytest.raises(ConfigError, match=rf"^config key segmentation.checkpoint: file {tmp_path}/m.pt does not exist"):
        check_config({"segmentation": {"checkpoint": str(tmp_path / "m.pt")}}, rows)
    (tmp_path / "m.pt").write_bytes(b"weights")
    assert check_config({"segmentation": {"checkpoint": str(tmp_path / "m.pt")}}, rows) == []


def test_deeprecon_enabled_without_segmentation_is_refused():
    cfg = {"segmentation": {"enabled": False}, "deeprecon": {"enabled": True}}
    with pytest.raises(ConfigError, match=r"^config key deeprecon.enabled: DeepRecon needs the segmentation "
                                          r"network \(segmentation.enabled is false\); set deeprecon.enabled: false"):
        check_config(cfg, FULL)


def test_deeprecon_with_a_checkpoint_still_needs_labelled_train_and_val(tmp_path):
    (tmp_path / "m.pt").write_bytes(b"weights")
    rows = sheet([("A", "train", False), ("B", "val", False), ("C", "test", True)])
    cfg = {"segmentation": {"checkpoint": str(tmp_path / "m.pt")}, "deeprecon": {"enabled": True}}
    with pytest.raises(ConfigError, match=r"^config key deeprecon.enabled: DeepRecon needs labelled train "
                                          r"subjects .* and labelled val subjects"):
        check_config(cfg, rows)


def test_dmcvr_enabled_without_labelled_train_subjects_is_refused(tmp_path):
    (tmp_path / "m.pt").write_bytes(b"weights")
    rows = sheet([("A", "train", False), ("B", "val", True), ("C", "test", True)])
    cfg = {"segmentation": {"checkpoint": str(tmp_path / "m.pt")}, "dmcvr": {"enabled": True}}
    with pytest.raises(ConfigError, match=r"^config key dmcvr.enabled: DMCVR needs labelled train subjects"):
        check_config(cfg, rows)


def test_gemini_gan_needs_paired_3d_truth(tmp_path):
    """A real cohort has no 3D truth to train on: refused when the user asks, noted when a preset does."""
    (tmp_path / "m.pt").write_bytes(b"weights")
    rows = sheet([("A", "train", True), ("B", "val", True), ("C", "test", True)])
    cfg = {"cohort": {"kind": "nifti"}, "segmentation": {"checkpoint": str(tmp_path / "m.pt")},
           "gemini_gan": {"enabled": True}}
    with pytest.raises(ConfigError, match=r"^config key gemini_gan.enabled: Gemini-GAN needs paired 3D truth"):
        check_config(cfg, rows)
    notes = check_config(cfg, rows, {})
    assert len(notes) == 1 and notes[0].startswith("config key gemini_gan.enabled: off for this cohort")
    assert check_config({**cfg, "cohort": {"kind": "synthetic"}}, rows) == []


def test_methods_enabled_only_by_the_demo_config_are_switched_off_with_a_note(caplog):
    """The presets enable DeepRecon and DMCVR; a user's NIfTI cohort that turns segmentation
    off must not have to turn them off too, but is told. The user's keys are exactly Snakemake's
    --configfile/--config values."""
    user = {"segmentation": {"enabled": False}}
    cfg = resolve_config(user, PRESETS)
    notes = check_config(cfg, FULL, user)
    assert [n.split(":")[0] for n in notes] == ["config key deeprecon.enabled", "config key dmcvr.enabled",
                                                "config key gemini_gan.enabled", "config key mae.enabled"]
    assert "off for this cohort although the demo preset enables it: DeepRecon needs the segmentation" in notes[0]

    class Workflow:  # Snakemake's --configfile values
        class config_settings:
            overwrite_config = user

    with caplog.at_level("WARNING", logger="snakemake.logging"):
        assert check_workflow_config(cfg, FULL, Workflow) == notes
    assert "config key dmcvr.enabled" in caplog.text


def test_a_user_who_enables_a_method_the_cohort_cannot_feed_gets_an_error_not_a_note():
    user = {"segmentation": {"enabled": False}, "dmcvr": {"enabled": True}}
    with pytest.raises(ConfigError, match=r"^config key dmcvr.enabled: DMCVR needs the segmentation network"):
        check_config(resolve_config(user, PRESETS), FULL, user)


def test_the_paper_presets_methods_and_evaluation_are_noted_off_for_a_cohort_without_labels():
    """A paper run over a cohort whose test subjects are unlabelled and without a segmentation
    network: what only the preset asks for is noted, naming the preset."""
    rows = sheet([("A", "train", False), ("B", "val", False), ("C", "test", False)])
    user = {"preset": "paper", "results": "r", "cohort": {"kind": "nifti"}, "segmentation": {"enabled": False}}
    notes = check_config(resolve_config(user, PRESETS), rows, user)
    assert [n.split(":")[0] for n in notes] == ["config key evaluation.splits", "config key deeprecon.enabled",
                                               "config key dmcvr.enabled", "config key gemini_gan.enabled", "config key mae.enabled"]
    assert "the paper preset evaluates split(s) ['test'], and no subject in them has manual labels" in notes[0]
    assert "although the paper preset enables it" in notes[1]


def test_a_plain_demo_run_has_no_user_keys():
    """`snakemake` without --configfile: Snakemake's overwrite_config is {}, so every key is the
    preset's (a note, never an error, for what the cohort cannot feed)."""

    class Workflow:
        class config_settings:
            overwrite_config = {}

    cfg = merged(DEMO, {"segmentation": {"enabled": False}})  # as if the preset itself had it off
    notes = check_workflow_config(cfg, FULL, Workflow)
    assert [n.split(":")[0] for n in notes] == ["config key deeprecon.enabled", "config key dmcvr.enabled",
                                                "config key gemini_gan.enabled", "config key mae.enabled"]


def test_the_mae_needs_labelled_subjects_to_fine_tune_on(tmp_path):
    (tmp_path / "m.pt").write_bytes(b"weights")
    rows = sheet([("A", "train", False), ("B", "val", False), ("C", "test", True)])
    cfg = {"segmentation": {"checkpoint": str(tmp_path / "m.pt")}, "mae": {"enabled": True}}
    with pytest.raises(ConfigError, match=r"^config key mae.enabled: the whole-heart MAE needs labelled train or val "
                                          r"subjects to fine-tune on"):
        check_config(cfg, rows)
    labelled_val = sheet([("A", "train", False), ("B", "val", True), ("C", "test", True)])
    assert check_config(cfg, labelled_val) == []
    # planes and frames that do not tile into patches are refused before any job runs
    for mae, match in (({"size": 96, "downsample": 5}, r"^config key mae.size: 96 px is not a multiple"),
                       ({"size": 100, "downsample": 1}, r"^config key mae.size: .* do not tile into 8 px patches"),
                       ({"preset": "paper", "size": 128, "n_frames": 30}, r"^config key mae.n_frames: 30 frames")):
        with pytest.raises(ConfigError, match=match):
            check_config({**cfg, "mae": {"enabled": True, **mae}}, labelled_val)


def test_motion_pair_must_be_in_the_sheet():
    with pytest.raises(ConfigError, match=r"^config key deeprecon.motion.target: subject 'Z' is not in the subjects sheet"):
        check_config({"deeprecon": {"motion": {"source": "C", "target": "Z"}}}, FULL)


# ---- 8. the split column of the evaluation tables ----------------------------------------------
def test_with_split_per_subject_and_per_method():
    rows = pd.DataFrame({"subject": ["B", "C", "C"], "method": ["nn", "nn", "directseg"], "LVEDV": [1.0, 2.0, 3.0]})
    splits = {"B": "val", "C": "test"}
    assert list(with_split(rows, rows, splits)["split"]) == ["val", "test", "test"]
    assert list(with_split(rows, rows, splits).columns) == ["subject", "split", "method", "LVEDV"]
    table = pd.DataFrame({"n": [2, 1]}, index=pd.Index(["nn", "directseg"], name="method"))
    out = with_split(table, rows, splits)
    assert list(out.columns) == ["method", "split", "n"] and list(out["split"]) == ["val+test", "test"]
    assert "split" not in with_split(table, rows, None).columns
