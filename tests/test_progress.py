"""Progress from a results folder while a run goes or after it was interrupted (#22 item 3)."""

import pandas as pd
import yaml

from cinerecon import progress
from cinerecon.journal import Journal


def manifest(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["subject", "status", "reason", "digest"]).to_csv(path, sep="\t", index=False)


def interrupted_run(root):
    """crop finished for shard b0000 (A ok, B failed); align was killed in b0000 after A;
    C (shard b0001) has not started."""
    manifest(root / "shards/crop/b0000.tsv", [("A", "ok", "", "1"), ("B", "failed", "crop: empty image", "")])
    (root / "shards/align").mkdir(parents=True)
    Journal(root / "shards/align/b0000.tsv").record({"subject": "A", "status": "ok", "reason": "", "key": "k"})
    with open(root / "shards/align/b0000.journal", "a") as f:
        f.write('{"subject": "B", "sta')  # a line torn by the kill
    sheet = root / "sheet.tsv"
    pd.DataFrame({"subject": ["A", "B", "C"], "split": ["train", "test", "test"]}).to_csv(sheet, sep="\t", index=False)
    (root / "config").mkdir()
    (root / "config/effective.yaml").write_text(yaml.safe_dump(
        {"cohort": {"kind": "nifti", "nifti": {"root": str(root), "sheet": str(sheet)}}}))
    return root


def test_progress_reads_manifests_and_the_journals_of_interrupted_shards(tmp_path):
    root = interrupted_run(tmp_path)
    rows = progress.finished_rows(root)
    assert set(map(tuple, rows[["stage", "subject", "status", "source"]].values)) == {
        ("crop", "A", "ok", "manifest"), ("crop", "B", "failed", "manifest"), ("align", "A", "ok", "journal")}
    subjects = progress.cohort_subjects(root)
    assert subjects == ["A", "B", "C"]
    summary = progress.stage_summary(rows, subjects).set_index("stage")
    assert list(summary.index) == ["crop", "align"]  # pipeline order
    assert summary.loc["crop", ["ok", "failed", "shards_done", "not_reported"]].tolist() == [1, 1, 1, 1]
    assert summary.loc["align", ["ok", "shards_done", "shards_running", "not_reported"]].tolist() == [1, 0, 1, 2]
    status = progress.partial_status(rows, subjects).set_index("subject")
    assert status.loc["A", "status"] == "ok" and status.loc["A", "stages_reported"] == 2
    assert status.loc["B", ["status", "stage", "reason"]].tolist() == ["failed", "crop", "crop: empty image"]
    assert status.loc["C", "status"] == "not run"


def test_progress_command_writes_the_status_table(tmp_path, capsys):
    root = interrupted_run(tmp_path)
    assert progress.main([str(root), "--status", str(tmp_path / "status.tsv")]) == 0
    out = capsys.readouterr().out
    assert "align" in out and "shards_running" in out
    table = pd.read_csv(tmp_path / "status.tsv", sep="\t")
    assert list(table["status"]) == ["ok", "failed", "not run"]
    assert progress.main([str(tmp_path / "nowhere")]) == 1
