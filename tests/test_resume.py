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
KINDS = ["unet", "wplus", "stylegan2", "encoder", "diffae", "dmcvr_fp16", "gemini_gan", "vama", "mae"]


def _drive(kind, out, state, kill_at=None, signum="SIGKILL"):
    args = [sys.executable, str(DRIVER), kind, str(out), str(state)] + ([str(kill_at), signum] if kill_at else [])
    return subprocess.run(args, capture_output=True, text=True)


def _reference(kind, folder):
    """The uninterrupted run's weights, trained in this process."""
    state = TrainingState(folder / "never.pt", "test", every_seconds=None, every_steps=None)
    prev = torch.get_num_threads()
    try:
        return resume_driver.train(kind, state, str(folder)).state_dict()
    finally:
        torch.set_num_threads(prev)
        state.clear()


def _assert_same(kind, out, reference):
    weights = torch.load(out, weights_only=True)
    assert weights.keys() == reference.keys()
    for key, value in reference.items():
        assert torch.equal(weights[key], value), f"{kind}: {key} differs after resuming"


@pytest.mark.parametrize("kind", KINDS)
def test_a_training_killed_mid_run_resumes_to_the_same_weights(kind, tmp_path):
    reference = _reference(kind, tmp_path)
    out, side = tmp_path / f"{kind}.pt", tmp_path / "model.training-state.pt"

    killed = _drive(kind, out, side, kill_at=7)  # saved after step 6; step 7 is lost and redone
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert side.exists() and not out.exists()
    assert torch.load(side, weights_only=True)["step"] == 6

    resumed = _drive(kind, out, side)
    assert resumed.returncode == 0, resumed.stderr
    _assert_same(kind, out, reference)
    assert not side.exists()  # cleared once the model is finished


def test_sigterm_saves_the_state_at_the_current_step_and_stops(tmp_path):
    """SLURM's time limit sends SIGTERM before SIGKILL: the step in progress finishes, the
    state is saved at that step (not at the last periodic save) and the job stops, failing."""
    reference = _reference("stylegan2", tmp_path)
    out, side = tmp_path / "g.pt", tmp_path / "model.training-state.pt"
    stopped = _drive("stylegan2", out, side, kill_at=5, signum="SIGTERM")
    assert stopped.returncode != 0 and "training state saved at step 5" in stopped.stderr, stopped.stderr[-2000:]
    assert torch.load(side, weights_only=True)["step"] == 5 and not out.exists()
    assert _drive("stylegan2", out, side).returncode == 0
    _assert_same("stylegan2", out, reference)


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
