"""Fault classes and resumption: environment faults fail the job and a retry redoes exactly
the unfinished subjects; a killed shard resumes; the same inputs give the same bytes."""

import errno
import gzip
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from cinerecon.batch import read_manifests, run_shard
from cinerecon.faults import ENVIRONMENT, INPUT, INTERNAL, fault_class
from cinerecon.io.files import atomic_path
from cinerecon.io.nifti import InputError
from cinerecon.journal import Journal
from cinerecon.models.checkpoints import save_weights

REPO = Path(__file__).resolve().parents[1]


def _stale_handle():
    try:
        raise OSError(errno.ESTALE, "Stale file handle")
    except OSError as cause:
        try:
            raise InputError("S1", "nifti/S1/sa.nii.gz", "cannot read NIfTI header") from cause
        except InputError as exc:
            return exc


@pytest.mark.parametrize("exc, kind", [
    (InputError("S1", "sa.nii.gz", "all zeros"), INPUT),
    (_stale_handle(), ENVIRONMENT),
    (OSError(errno.ENOSPC, "No space left on device"), ENVIRONMENT),
    (FileNotFoundError(errno.ENOENT, "No such file", "aligned/S1/sa.nii.gz"), ENVIRONMENT),
    (MemoryError(), ENVIRONMENT),
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), ENVIRONMENT),
    (torch.OutOfMemoryError("CUDA out of memory"), ENVIRONMENT),
    (KeyboardInterrupt(), ENVIRONMENT),
    (gzip.BadGzipFile("Not a gzipped file"), INTERNAL),
    (RuntimeError("shapes cannot be multiplied"), INTERNAL),
    (TypeError("unsupported operand"), INTERNAL),
])
def test_fault_classes(exc, kind):
    assert fault_class(exc) == kind


def _counting_writer(root, calls, fault=None):
    """work/outputs for subjects A..E: two files each; `fault` = (subject, exception) is
    raised after the subject's first file is written (a partial subject)."""

    def outputs(s):
        return [root / s / "a.txt", root / s / "b.txt"]

    def work(s):
        calls.append(s)
        (root / s).mkdir(parents=True, exist_ok=True)
        (root / s / "a.txt").write_text(s)
        if fault and fault[0] == s:
            raise fault[1]
        (root / s / "b.txt").write_text(s * 2)

    return work, outputs


@pytest.mark.parametrize("fault", [
    RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"),
    OSError(errno.ENOSPC, "No space left on device"),
    MemoryError(),
])
def test_an_environment_fault_fails_the_job_and_the_retry_redoes_only_the_rest(tmp_path, fault):
    subjects = ["A", "B", "C", "D"]
    root, manifest = tmp_path / "results/crop", tmp_path / "results/shards/crop/b0000.tsv"
    calls = []
    work, outputs = _counting_writer(root, calls, ("C", fault))
    with pytest.raises(type(fault)):
        run_shard("crop", subjects, work, outputs, manifest)
    assert calls == ["A", "B", "C"]
    assert not manifest.exists()  # the job failed: Snakemake retries it
    assert not (root / "C/a.txt").exists()  # the partial subject was removed
    assert set(Journal(manifest).load()) == {"A", "B"}
    calls.clear()
    work, outputs = _counting_writer(root, calls)
    table = run_shard("crop", subjects, work, outputs, manifest)
    assert calls == ["C", "D"] and list(table["status"]) == ["ok"] * 4
    # the result equals an uninterrupted run's, byte for byte
    clean = tmp_path / "clean/shards/crop/b0000.tsv"
    run_shard("crop", subjects, *_counting_writer(tmp_path / "clean/crop", []), clean)
    assert manifest.read_bytes() == clean.read_bytes()


def test_input_faults_are_remembered_and_changed_inputs_rerun_only_their_subject(tmp_path):
    root = tmp_path / "results"
    up, manifest = root / "shards/crop/b0000.tsv", root / "shards/align/b0000.tsv"
    run_shard("crop", ["A", "B", "C"], *_counting_writer(root / "crop", []), up)
    calls = []
    work, outputs = _counting_writer(root / "align", calls, ("B", InputError("B", "crop/B/sa.nii.gz", "bad")))
    first = run_shard("align", ["A", "B", "C"], work, outputs, manifest, upstream=[up])
    assert list(first["status"]) == ["ok", "failed", "ok"]
    calls.clear()
    again = run_shard("align", ["A", "B", "C"], work, outputs, manifest, upstream=[up])
    assert calls == [] and again.equals(first)  # a rerun with the same inputs recomputes nothing
    # subject C's upstream result changes: C alone is recomputed, and its digest changes
    (root / "crop/C/b.txt").write_text("edited by hand")  # so the crop stage redoes C...
    crop_work, crop_outputs = _counting_writer(root / "crop", [])  # ...whose outputs are now b.txt alone
    run_shard("crop", ["A", "B", "C"], lambda s: crop_work(s) if s != "C" else (root / "crop/C/b.txt").write_text("?"),
              lambda s: crop_outputs(s)[1:] if s == "C" else crop_outputs(s), up)
    changed = run_shard("align", ["A", "B", "C"], work, outputs, manifest, upstream=[up])
    assert calls == ["C"]
    assert changed.loc[2, "digest"] != first.loc[2, "digest"] and changed.loc[0, "digest"] == first.loc[0, "digest"]
    # a finished subject whose files were touched since is recomputed
    (root / "align/A/a.txt").write_text("edited")
    run_shard("align", ["A", "B", "C"], work, outputs, manifest, upstream=[up])
    assert calls == ["C", "A"]


KILLED_SHARD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import cinerecon.io.files as files
    from cinerecon.stages import synth_outputs, synth_run
    from cinerecon.workflow import shard_stage

    results, kill_at = Path(sys.argv[1]), sys.argv[2]
    if kill_at:  # SIGKILL while the subject's files are being written: a temporary file is on disk
        replace, written = os.replace, []
        def replace_then_die(src, dst):
            if f"/{kill_at}/" in str(dst):
                written.append(dst)
                if len(written) == 3:
                    os.kill(os.getpid(), signal.SIGKILL)
            replace(src, dst)
        files.os.replace = replace_then_die
    subjects = [f"S{i}" for i in range(5)]
    shard = {"subjects": subjects, "labelled": subjects[:2], "lax": {s: {"2ch": "ukbb", "3ch": "ukbb", "4ch": "ukbb"}
                                                                    for s in subjects[:2]}}
    shard_stage(results / "logs/synth.log", "synth", shard, results / "shards/synth/b0000.tsv", [],
                synth_outputs, synth_run, seed=3, index={s: i for i, s in enumerate(subjects)},
                acquisition={"n_frames": 6, "sax_matrix": [48, 48], "lax_matrix": [48, 48]}, dicom=None,
                label_frames="ed_es")
""")


def _shard_job(results, kill_at=""):
    return subprocess.run([sys.executable, "-c", KILLED_SHARD, str(results), kill_at], cwd=REPO,
                          capture_output=True, text=True)


def test_a_shard_killed_during_subject_3_of_5_resumes_without_redoing_subjects_1_and_2(tmp_path):
    killed = _shard_job(tmp_path / "resumed", kill_at="S2")
    assert killed.returncode == -signal.SIGKILL
    results = tmp_path / "resumed"
    assert list(results.rglob(".*.tmp*"))  # the kill left a temporary file behind...
    assert not (results / "shards/synth/b0000.tsv").exists()
    finished = {p: p.stat().st_mtime_ns for s in ("S0", "S1") for p in (results / "synthetic" / s).rglob("*.*")}
    rerun = _shard_job(results)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    log = (results / "logs/synth.log").read_text()
    assert log.count("not recomputed") == 2 and "subject S0 (1/5): unchanged" in log
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # subjects 1-2 untouched
    assert not list(results.rglob(".*.tmp*"))  # ...which the rerun removed
    clean = tmp_path / "clean"
    assert _shard_job(clean).returncode == 0
    assert (results / "shards/synth/b0000.tsv").read_bytes() == (clean / "shards/synth/b0000.tsv").read_bytes()
    table = read_manifests([results / "shards/synth/b0000.tsv"])
    assert list(table["status"]) == ["ok"] * 5


def test_a_stale_temporary_file_is_removed_by_the_next_writer(tmp_path):
    target = tmp_path / "model.pt"
    stale = tmp_path / ".model.tmp12345.pt"
    stale.write_bytes(b"half")
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and not stale.exists()


def test_the_same_weights_give_the_same_checkpoint_bytes(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    save_weights(model, {"width": 3}, "test", tmp_path / "a/model.pt")
    save_weights(model, {"width": 3}, "test", tmp_path / "b/model.pt")
    assert (tmp_path / "a/model.pt").read_bytes() == (tmp_path / "b/model.pt").read_bytes()
