import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from cinerecon.geometry import apply_affine
from cinerecon.io.nifti import InputError, save_nifti
from cinerecon.io.subject import VIEWS
from cinerecon.preprocess import crop as C
from cinerecon.preprocess.ingest import ingest_images, ingest_labels


def load(path):
    img = nib.load(path)
    return np.asanyarray(img.dataobj), img.affine


def test_crop_volume_keeps_world_positions():
    data = np.arange(20 * 30 * 2 * 3).reshape(20, 30, 2, 3)
    affine = np.diag([1.8, 1.8, 10.0, 1.0])
    affine[:3, 3] = [5.0, -7.0, 3.0]
    out, new_affine = C.crop_volume(data, affine, (-4, 10), (12, 12))
    assert out.shape == (12, 12, 2, 3)
    # voxel (i, j) of the crop is voxel (i - 4, j + 10) of the input: same world point
    assert np.array_equal(out[6, 3], data[2, 13])
    assert np.allclose(apply_affine(new_affine, [6, 3, 1]), apply_affine(affine, [2, 13, 1]))
    assert not out[:4].any()  # outside the image is zero padding


def test_long_axis_from_lax_planes(synth_subject):
    params = json.loads(open(synth_subject["truth_params"]).read())["heart"]
    affines = [nib.load(synth_subject[f"la_{v}"]).affine for v in ("2ch", "3ch", "4ch")]
    point, direction = C.long_axis_from_lax(affines)
    # planes are planned through the LV axis with <= 3 degrees of tilt
    assert abs(direction @ np.array(params["e_long"])) > np.cos(np.deg2rad(6))
    assert C.long_axis_from_lax(affines[:1]) is None


def test_label_free_centre_is_near_label_centroid(synth_subject):
    views = {v: load(synth_subject[v]) for v in VIEWS}
    centre = np.array(C.estimate_heart_centre(views)["centre_mm"])
    labels, affine = load(synth_subject["label_sa"])
    err = C.centring_error(centre, labels, affine)
    assert err["centring_error_inplane_mm"] < 8.0
    # without LAX views the SAX motion alone still finds the heart
    sax_only = np.array(C.estimate_heart_centre({"sa": views["sa"]})["centre_mm"])
    assert C.centring_error(sax_only, labels, affine)["centring_error_inplane_mm"] < 10.0


def test_crop_subject_files_contain_the_heart(synth_subject, tmp_path):
    inputs = {v: synth_subject[v] for v in VIEWS}
    outputs = {v: tmp_path / f"{v}.nii.gz" for v in VIEWS}
    record = C.crop_subject_files("SYN0003", inputs, outputs, tmp_path / "crop.json", (96, 96), (112, 112))
    label_out = {v: tmp_path / f"label_{v}.nii.gz" for v in VIEWS}
    report = C.crop_label_files("SYN0003", {v: synth_subject[f"label_{v}"] for v in VIEWS},
                                tmp_path / "crop.json", label_out, tmp_path / "centring.json")
    for view in VIEWS:
        img, aff = load(outputs[view])
        assert img.shape[:2] == ((96, 96) if view == "sa" else (112, 112))
        assert report[f"labelled_voxels_outside_crop_{view}"] == 0
        # the same world point holds the same pixel before and after the crop
        orig, orig_aff = load(inputs[view])
        start = record["boxes"][view]["start"]
        assert np.array_equal(img[10, 20], orig[10 + start[0], 20 + start[1]])
        assert np.allclose(apply_affine(aff, [10, 20, 0]), apply_affine(orig_aff, [10 + start[0], 20 + start[1], 0]))
    assert report["centring_error_inplane_mm"] < 8.0


def copy_subject(synth_subject, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for view in VIEWS:
        shutil.copy(synth_subject[view], folder / f"{view}.nii.gz")
        shutil.copy(synth_subject[f"label_{view}"], folder / f"label_{view}.nii.gz")
    return folder


def test_ingest_round_trip(synth_subject, tmp_path):
    src = copy_subject(synth_subject, tmp_path / "raw")
    outputs = {v: tmp_path / "out" / f"{v}.nii.gz" for v in VIEWS}
    report = ingest_images(src, "S1", outputs, tmp_path / "out" / "ingest.json")
    assert report["views"]["sa"]["frame_interval_s"] > 0
    for view in VIEWS:
        a, b = load(src / f"{view}.nii.gz"), load(outputs[view])
        assert np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1])
    ingest_labels(src, "S1", {v: tmp_path / "out" / f"label_{v}.nii.gz" for v in VIEWS})


@pytest.mark.parametrize("problem, message", [
    ("missing", "file is missing"),
    ("corrupt", "cannot read NIfTI"),
    ("zeros", "all zeros"),
    ("three_d", "expected a 4D cine"),
    ("frames", "different frame counts"),
])
def test_ingest_rejects_bad_images_and_writes_nothing(synth_subject, tmp_path, problem, message):
    src = copy_subject(synth_subject, tmp_path / "raw")
    target = src / "la_3ch.nii.gz"
    data, affine = load(target)
    if problem == "missing":
        target.unlink()
    elif problem == "corrupt":
        target.write_bytes(target.read_bytes()[:500])
    elif problem == "zeros":
        save_nifti(target, np.zeros_like(data), affine)
    elif problem == "three_d":
        save_nifti(target, data[:, :, 0], affine)
    elif problem == "frames":
        save_nifti(target, data[..., :-2], affine)
    outputs = {v: tmp_path / "out" / f"{v}.nii.gz" for v in VIEWS}
    with pytest.raises(InputError, match=message) as err:
        ingest_images(src, "S42", outputs, tmp_path / "out" / "ingest.json")
    assert "subject S42" in str(err.value)
    if problem != "frames":
        assert "la_3ch.nii.gz" in str(err.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_ingest_labels_rejects_bad_values(synth_subject, tmp_path):
    src = copy_subject(synth_subject, tmp_path / "raw")
    labels, affine = load(src / "label_sa.nii.gz")
    labels = labels.copy()
    labels[0, 0, 0, 0] = 7
    save_nifti(src / "label_sa.nii.gz", labels, affine)
    with pytest.raises(InputError, match=r"unexpected label values \[7\]"):
        ingest_labels(src, "S7", {v: tmp_path / f"label_{v}.nii.gz" for v in VIEWS})


def test_nifti_geometry_reads_the_header_only(tmp_path):
    from cinerecon.io.nifti import nifti_geometry

    affine = np.diag([1.8, 1.8, 10.0, 1.0])
    affine[:3, 3] = [1.0, 2.0, 3.0]
    save_nifti(tmp_path / "sa.nii.gz", np.zeros((8, 6, 3, 5), np.int16), affine)
    shape, read = nifti_geometry(tmp_path / "sa.nii.gz", "S1")
    assert shape == (8, 6, 3, 5) and np.allclose(read, affine)
    with pytest.raises(InputError, match="S1.*file is missing"):
        nifti_geometry(tmp_path / "none.nii.gz", "S1")
    (tmp_path / "bad.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(InputError, match="cannot read NIfTI"):
        nifti_geometry(tmp_path / "bad.nii.gz", "S1")
