"""Shards: stable membership, per-subject failure isolation, manifests, change detection."""

import os

import pandas as pd
import pytest

from cinerecon.batch import (
    make_shards,
    ok_subjects,
    read_manifests,
    run_shard,
    shard_size_advice,
    stat_fingerprint,
    subject_status,
)
from cinerecon.journal import Journal
from cinerecon.layout import Layout


def test_shards_are_consecutive_and_stable_when_subjects_are_appended():
    subjects = [f"S{i}" for i in range(10)]
    shards = make_shards(subjects, 4)
    assert shards == {"b0000": subjects[:4], "b0001": subjects[4:8], "b0002": subjects[8:]}
    grown = make_shards(subjects + ["S10", "S11", "S12"], 4)
    assert all(grown[k] == v for k, v in shards.items() if len(v) == 4)
    assert make_shards([], 4) == {}
    with pytest.raises(ValueError):
        make_shards(subjects, 0)


def test_shard_size_advice_names_a_size_that_keeps_the_shard_count_bounded():
    assert shard_size_advice(20_000, 100) is None  # 200 shards: at the limit
    advice = shard_size_advice(50_000, 100)
    assert "500 shards of 100" in advice and advice.endswith("batch.subjects_per_shard: 300")
    assert -(-50_000 // 300) <= 200
    assert shard_size_advice(100_000, 500) is None
    assert shard_size_advice(100_001, 500).endswith("batch.subjects_per_shard: 600")


def _writer(root, fail=()):
    def outputs(s):
        return [root / s / "a.txt", root / s / "b.txt"]

    def work(s):
        (root / s).mkdir(parents=True, exist_ok=True)
        (root / s / "a.txt").write_text(s)
        if s in fail:
            raise ValueError(f"subject {s}: {root / s / 'input.nii.gz'}: all zeros")
        (root / s / "b.txt").write_text(s * 2)

    return work, outputs


def test_a_failing_subject_fails_alone_and_leaves_nothing(tmp_path):
    work, outputs = _writer(tmp_path, fail={"B"})
    manifest = tmp_path / "shards/crop/b0000.tsv"
    table = run_shard("crop", ["A", "B", "C"], work, outputs, manifest)
    assert list(table["status"]) == ["ok", "failed", "ok"]
    assert "all zeros" in table.loc[1, "reason"] and "subject B" in table.loc[1, "reason"]
    assert not (tmp_path / "B" / "a.txt").exists()  # the partial output was removed
    assert (tmp_path / "C" / "b.txt").read_text() == "CC"
    assert ok_subjects([manifest]) == ["A", "C"]
    # a later stage skips B and says where it failed
    later = run_shard("align", ["A", "B", "C"], lambda s: None, lambda s: [], tmp_path / "m2.tsv",
                      upstream=[manifest])
    assert later.loc[1, "status"] == "skipped" and later.loc[1, "reason"].startswith("crop: ")
    status = subject_status([manifest, tmp_path / "m2.tsv"], ["A", "B", "C", "D"])
    assert list(status["status"]) == ["ok", "failed", "ok", "not run"]
    assert status.loc[1, "stage"] == "crop"


def test_a_shard_where_every_subject_fails_still_writes_its_manifest(tmp_path):
    """Bad subjects (input or internal faults) never fail the job: the cohort tables list them."""
    work, outputs = _writer(tmp_path, fail={"A", "B"})
    table = run_shard("crop", ["A", "B"], work, outputs, tmp_path / "shards/crop/b0000.tsv")
    assert list(table["status"]) == ["failed", "failed"]
    assert all("internal error (ValueError)" in r for r in table["reason"])


def test_a_shard_of_bad_inputs_writes_its_manifest(tmp_path):
    """Input faults (InputError, e.g. a predicted segmentation without LV) fail each subject
    alone, even all of them: the cohort tables must still list them."""
    from cinerecon.io.nifti import InputError

    def work(s):
        raise InputError(s, f"{s}/seg_sa.nii.gz", "need a 4D SAX label cine with an LV blood pool")

    table = run_shard("cohort_recon", ["A", "B"], work, lambda s: [], tmp_path / "m.tsv")
    assert list(table["status"]) == ["failed", "failed"] and (tmp_path / "m.tsv").exists()
    assert "subject B: B/seg_sa.nii.gz: need" in table.loc[1, "reason"]


def test_stale_outputs_are_cleared_and_missing_outputs_are_failures(tmp_path):
    (tmp_path / "A").mkdir()
    (tmp_path / "A" / "old.txt").write_text("stale")
    run_shard("x", ["A", "B"], lambda s: None,
              lambda s: [tmp_path / s / "old.txt"] if s == "A" else [], tmp_path / "m.tsv")
    table = read_manifests([tmp_path / "m.tsv"])
    assert table.loc[0, "status"] == "failed" and "did not write" in table.loc[0, "reason"]
    assert not (tmp_path / "A" / "old.txt").exists()


def test_manifest_digest_follows_output_content(tmp_path):
    work, outputs = _writer(tmp_path)
    first = run_shard("x", ["A"], work, outputs, tmp_path / "m.tsv")
    again = run_shard("x", ["A"], work, outputs, tmp_path / "m.tsv")
    assert first.loc[0, "digest"] == again.loc[0, "digest"]

    def other(s):
        work(s)
        (tmp_path / s / "b.txt").write_text("changed")

    Journal(tmp_path / "m.tsv").path.unlink()  # (as new code would: not reused)
    changed = run_shard("x", ["A"], other, outputs, tmp_path / "m.tsv")
    assert changed.loc[0, "digest"] != first.loc[0, "digest"]
    # the same results under another results root have the same digest
    digests = []
    for root in ("results", "results_slurm"):
        work2, outputs2 = _writer(tmp_path / root / "crop")
        digests.append(run_shard("x", ["A"], work2, outputs2, tmp_path / root / "m.tsv").loc[0, "digest"])
    assert digests[0] == digests[1]


def test_stat_fingerprint_sees_changed_and_missing_files(tmp_path):
    f = tmp_path / "sa.nii.gz"
    f.write_bytes(b"1234")
    before = stat_fingerprint([f, tmp_path / "none"])
    assert stat_fingerprint([f, tmp_path / "none"]) == before
    os.utime(f, ns=(1, 1))
    assert stat_fingerprint([f, tmp_path / "none"]) != before
    (tmp_path / "none").write_bytes(b"")
    assert stat_fingerprint([f, tmp_path / "none"]) != before


def test_layout_of_a_manifest_is_its_results_root(tmp_path):
    layout = Layout.of_manifest(tmp_path / "res" / "shards" / "crop" / "b0000.tsv")
    assert layout.results == tmp_path / "res"
    assert layout.aligned("S1")["sa"] == tmp_path / "res/aligned/S1/sa.nii.gz"
    assert isinstance(read_manifests([]), pd.DataFrame)
