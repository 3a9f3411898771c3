"""Training data that streams: on-disk slice stores, batches a pure function of the step,
pre-training sets of every non-test subject."""

import numpy as np
import pandas as pd
import pytest
import torch

from cinerecon.io.nifti import save_nifti
from cinerecon.io.sheet import pretraining_subjects
from cinerecon.latent.pretraining import cine_store
from cinerecon.models.data import frames_to_slices, normalise_intensity
from cinerecon.models.resume import TrainingJob
from cinerecon.models.slice_store import BatchPlan, SliceStore, batches, cached_stores, write_store, write_stores


def test_a_store_returns_the_rows_asked_in_the_order_asked(tmp_path):
    data = np.arange(7 * 2 * 3, dtype=np.float32).reshape(7, 1, 2, 3)
    store = write_store(tmp_path / "x.bin", [data[:3], data[3:]], np.float32)
    assert len(store) == 7 and store.shape == (7, 1, 2, 3)
    for rows in ([6, 0, 3], [2, 3, 4], [5, 5, 1], [], list(range(7))):
        assert np.array_equal(store[rows], data[rows])
    assert np.array_equal(store[1:6:2], data[1:6:2])
    with pytest.raises(IndexError):
        store[[7]]


def test_aligned_stores_are_written_in_one_pass_and_only_complete_ones_open(tmp_path):
    x = np.random.default_rng(0).normal(size=(5, 1, 4, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.uint8)
    stores = write_stores(tmp_path, [{"x": x[:2], "y": y[:2]}, {"x": x[2:], "y": y[2:]}],
                          {"x": np.float32, "y": np.uint8})
    assert np.array_equal(stores["x"][[4, 0]], x[[4, 0]]) and stores["y"][:].dtype == np.uint8
    with pytest.raises(ValueError, match="all must match"):
        write_stores(tmp_path, [{"x": x[:2]}, {"x": x[:2, :, :3]}], {"x": np.float32})
    assert not (tmp_path / "x.json").exists()  # the failed rewrite left no description
    with pytest.raises(FileNotFoundError):
        SliceStore(tmp_path / "x.bin")


def test_cached_stores_are_rebuilt_only_for_another_fingerprint(tmp_path):
    calls = []

    def build(folder):
        calls.append(folder)
        write_store(folder / "a.bin", [np.zeros((2, 3), np.float32)], np.float32)
        return ["a"]

    assert len(cached_stores(tmp_path / "c", "one", build)["a"]) == 2
    cached_stores(tmp_path / "c", "one", build)
    assert len(calls) == 1
    cached_stores(tmp_path / "c", "two", build)
    assert len(calls) == 2


def test_each_step_reads_rows_fixed_by_seed_and_step():
    plan = BatchPlan(10, 4, seed=3)
    assert plan.steps_per_epoch == 3
    epoch0 = torch.cat([plan.rows(s) for s in range(3)])
    assert sorted(epoch0.tolist()) == list(range(10))  # an epoch is a permutation, last batch of 2
    assert torch.equal(BatchPlan(10, 4, seed=3).rows(4), plan.rows(4))  # same step, same rows, any order of asking
    assert not torch.equal(torch.cat([plan.rows(s) for s in range(3, 6)]), epoch0)  # a fresh epoch
    dropped = BatchPlan(10, 4, seed=3, drop_last=True)
    assert dropped.steps_per_epoch == 2 and all(len(dropped.rows(s)) == 4 for s in range(5))
    assert BatchPlan(3, 8, seed=0, drop_last=True).rows(0).sort().values.tolist() == [0, 1, 2]
    draws = BatchPlan(10, 4, seed=3, mode="replacement")
    assert torch.equal(draws.rows(7), BatchPlan(10, 4, seed=3, mode="replacement").rows(7))


def test_worker_processes_read_the_same_batches_as_the_main_process(tmp_path):
    data = np.random.default_rng(1).normal(size=(9, 1, 3, 3)).astype(np.float32)
    labels = np.arange(9, dtype=np.uint8)
    x = write_store(tmp_path / "x.bin", [data], np.float32)
    y = write_store(tmp_path / "y.bin", [labels], np.uint8)
    plan = BatchPlan(9, 4, seed=0)
    main = list(batches((x, y), plan, 2, 7))
    ahead = list(batches((x, y), plan, 2, 7, workers=2))
    assert len(main) == 5
    for (xa, ya), (xb, yb) in zip(main, ahead):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert torch.equal(xa, torch.from_numpy(data[ya.long().numpy()]))  # images and labels stay aligned


def test_pretraining_takes_every_non_test_subject_labelled_or_not():
    sheet = pd.DataFrame({"split": ["train", "train", "val", "test", "test"],
                          "has_labels": [False, True, False, True, False]},
                         index=["A", "B", "C", "D", "E"])
    assert pretraining_subjects(sheet) == ["A", "B", "C"]
    assert pretraining_subjects(sheet, ["train"]) == ["A", "B"]
    with pytest.raises(ValueError, match="never enter a training set"):
        pretraining_subjects(sheet, ["train", "test"])


def test_a_cine_store_holds_every_kth_frame_of_each_subject_normalised(tmp_path):
    rng = np.random.default_rng(2)
    paths, cines = {}, {}
    for s in ("S1", "S2"):
        cines[s] = rng.normal(size=(6, 6, 3, 8)).astype(np.float32)
        paths[s] = tmp_path / f"{s}.nii.gz"
        save_nifti(paths[s], cines[s], np.diag([1.8, 1.8, 8.0, 1.0]))
    job = TrainingJob(tmp_path / "model.pt", "fp")
    store = cine_store(job, paths, frame_stride=3)
    expected = np.concatenate([frames_to_slices(normalise_intensity(cines[s]), [0, 3, 6])[:, None] for s in paths])
    assert store.shape == (18, 1, 6, 6) and store.dtype == np.float16  # 2 subjects x 3 frames x 3 slices
    assert np.allclose(store[:].astype(np.float32), expected, atol=5e-4)  # float16: steps <= 0.0005 in [-1, 1]
    job.finish()
    assert not job.data_folder.exists()
