"""Resumable training: a training process killed with SIGKILL mid-run and restarted ends with the
same weights, bit for bit, as an uninterrupted run (CPU, deterministic kernels)."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cinerecon.models.resume import TrainingState, fingerprint, snapshot, state_path_for

sys.path.insert(0, str(Path(__file__).parent))
import resume_driver  # noqa: E402

DRIVER = Path(__file__).parent / "resume_driver.py"
KINDS = ["unet", "wplus", "stylegan2", "encoder", "diffae"]


def _drive(kind, out, state, kill_at=None):
    args = [sys.executable, str(DRIVER), kind, str(out), str(state)] + ([str(kill_at)] if kill_at else [])
    return subprocess.run(args, capture_output=True, text=True)


@pytest.mark.parametrize("kind", KINDS)
def test_a_training_killed_mid_run_resumes_to_the_same_weights(kind, tmp_path):
    # uninterrupted, in this process
    state = TrainingState(tmp_path / "never.pt", "test", every_seconds=None, every_steps=None)
    prev = torch.get_num_threads()
    try:
        reference = resume_driver.train(kind, state, str(tmp_path)).state_dict()
    finally:
        torch.set_num_threads(prev)
    out, side = tmp_path / f"{kind}.pt", tmp_path / "model.training-state.pt"

    killed = _drive(kind, out, side, kill_at=7)  # saved after step 6; step 7 is lost and redone
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert side.exists() and not out.exists()
    assert torch.load(side, weights_only=True)["step"] == 6

    resumed = _drive(kind, out, side)
    assert resumed.returncode == 0, resumed.stderr
    weights = torch.load(out, weights_only=True)
    assert weights.keys() == reference.keys()
    for key, value in reference.items():
        assert torch.equal(weights[key], value), f"{kind}: {key} differs after resuming"
    assert not side.exists()  # cleared once the model is finished


def test_a_state_saved_for_other_settings_or_data_is_not_resumed(tmp_path):
    path = tmp_path / "s.pt"
    TrainingState(path, fingerprint({"steps": 10}, ["a", "b"])).save(snapshot(5, history=[{"step": 5}]))
    assert TrainingState(path, fingerprint({"steps": 10}, ["b", "a"])).load()["step"] == 5  # same subjects
    assert TrainingState(path, fingerprint({"steps": 20}, ["a", "b"])).load() is None
    assert not path.exists()  # a stale state is removed


def test_an_unreadable_state_starts_afresh(tmp_path):
    path = tmp_path / "s.pt"
    path.write_bytes(b"half a file")
    assert TrainingState(path, "x").load() is None


def test_saves_are_due_by_steps_or_by_time():
    now = [0.0]
    state = TrainingState("unused", "x", every_seconds=60, every_steps=None, clock=lambda: now[0])
    assert not state.due(1)
    now[0] = 61
    assert state.due(2)
    assert TrainingState("unused", "x", every_seconds=None, every_steps=5).due(10)
    assert not TrainingState("unused", "x", every_seconds=None, every_steps=5).due(11)


def test_the_side_file_is_beside_the_model_and_not_an_atomic_temporary():
    assert state_path_for("results/models/seg/paper/model.pt").name == ".model.training-state.pt"
    assert state_path_for("results/models/seg/paper/model.pt").parent == Path("results/models/seg/paper")
