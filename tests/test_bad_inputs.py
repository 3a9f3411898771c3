"""Bad per-subject NIfTI inputs are refused as InputError (subject, file, reason) and ingest
writes nothing; the LAX/SAX geometry rule has known answers on hand-made planes."""

import logging
import shutil

import nibabel as nib
import numpy as np
import pytest

from cinerecon.geometry import plane_normal
from cinerecon.io.nifti import InputError, frame_interval, save_nifti
from cinerecon.io.subject import VIEWS, lax_sax_intersections, validate_lax_geometry
from cinerecon.preprocess.ingest import ingest_images, ingest_labels

SUBJECT = "S42"


def load(path):
    img = nib.load(path)
    return np.asanyarray(img.dataobj), img.affine.copy(), img.header


@pytest.fixture
def src(synth_subject, tmp_path):
    """A copy of the synthetic subject's images and labels, to damage."""
    folder = tmp_path / "raw"
    folder.mkdir()
    for view in VIEWS:
        shutil.copy(synth_subject[view], folder / f"{view}.nii.gz")
        shutil.copy(synth_subject[f"label_{view}"], folder / f"label_{view}.nii.gz")
    return folder


def rewrite(path, data=None, affine=None):
    old, old_affine, header = load(path)
    save_nifti(path, old if data is None else data, old_affine if affine is None else affine,
               frame_interval(header))


def refused(src, out, match, bad_file):
    """ingest_images must raise InputError naming the subject and `bad_file`, write nothing."""
    outputs = {v: out / f"{v}.nii.gz" for v in VIEWS}
    with pytest.raises(InputError, match=match) as info:
        ingest_images(src, SUBJECT, outputs, out / "ingest.json")
    err = info.value
    assert err.subject == SUBJECT and str(err).startswith(f"subject {SUBJECT}: ")
    assert err.path.endswith(bad_file)
    assert not out.exists() or not any(out.iterdir())
    return err


# ---- image content --------------------------------------------------------------------------

def _nan(d):
    d = d.astype(np.float32)
    d[3, 4, 0, 1] = np.nan
    return d


def _inf(d):
    d = d.astype(np.float32)
    d[3, 4, 0, 1] = np.inf
    return d


def _blank_frame(d):
    d = d.copy()
    d[..., 5] = 17
    return d


def _blank_slice(d):
    d = d.copy()
    d[:, :, 2] = 0
    return d


def _still(d):
    return np.repeat(d[..., :1], d.shape[3], axis=3)


@pytest.mark.parametrize("view, damage, match", [
    ("la_2ch", _nan, "NaN or infinite"),
    ("sa", _inf, "NaN or infinite"),
    ("la_3ch", np.zeros_like, "all zeros"),
    ("la_4ch", lambda d: np.full_like(d, 250), r"image is constant \(every voxel = 250\)"),
    ("sa", lambda d: np.full_like(d, -3), r"image is constant \(every voxel = -3\)"),
    ("la_2ch", _blank_frame, r"1 of 20 frame\(s\) have no spatial variation \(frame 5: every voxel = 17\)"),
    ("sa", _blank_slice, r"1 of \d+ slice\(s\) are blank in every frame \(slice 2: every voxel = 0\)"),
    ("la_4ch", _still, "all 20 frames are identical: no temporal variation"),
    ("sa", _still, "all 20 frames are identical"),
], ids=["nan", "inf", "zeros", "constant-lax", "constant-sax", "blank-frame", "blank-slice",
        "still-lax", "still-sax"])
def test_bad_image_content_is_refused(src, tmp_path, view, damage, match):
    path = src / f"{view}.nii.gz"
    rewrite(path, damage(load(path)[0]))
    refused(src, tmp_path / "out", match, f"{view}.nii.gz")


def test_non_numeric_images_are_refused(src, tmp_path):
    data, affine, _ = load(src / "la_3ch.nii.gz")
    rgb = np.zeros(data.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["R"] = np.clip(data, 0, 255)
    nib.save(nib.Nifti1Image(rgb, affine), src / "la_3ch.nii.gz")
    refused(src, tmp_path / "out", r"data type RGB .* is not a real-valued numeric", "la_3ch.nii.gz")
    nib.save(nib.Nifti1Image(data.astype(np.complex64) * (1 + 1j), affine), src / "la_3ch.nii.gz")
    refused(src, tmp_path / "out", "data type complex64 is not a real-valued numeric", "la_3ch.nii.gz")


# ---- dimensions and files -------------------------------------------------------------------

@pytest.mark.parametrize("view, damage, match", [
    ("sa", lambda d: d[:, :, :1], r"SAX stack has 1 slice\(s\); need at least 2"),
    ("la_2ch", lambda d: np.concatenate([d, d[::-1]], axis=2), r"LAX view must have one slice \(Z = 1\), got Z = 2"),
    ("la_4ch", lambda d: d[:, :, 0], "expected a 4D cine"),
    ("la_3ch", lambda d: d[..., :1], r"cine has 1 frame\(s\); need at least 2"),
    ("la_3ch", lambda d: d[:12, :12], "in-plane matrix 12x12 is too small"),
], ids=["sax-one-slice", "lax-two-slices", "three-d", "one-frame", "tiny-matrix"])
def test_bad_dimensions_are_refused(src, tmp_path, view, damage, match):
    path = src / f"{view}.nii.gz"
    rewrite(path, damage(load(path)[0]))
    refused(src, tmp_path / "out", match, f"{view}.nii.gz")


def test_missing_truncated_and_corrupt_files_are_refused(src, tmp_path):
    path = src / "la_2ch.nii.gz"
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])                  # truncated gzip stream
    refused(src, tmp_path / "out", "cannot read NIfTI", "la_2ch.nii.gz")
    path.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 4)      # gzip magic, garbage after
    refused(src, tmp_path / "out", "cannot read NIfTI", "la_2ch.nii.gz")
    path.unlink()
    refused(src, tmp_path / "out", "file is missing", "la_2ch.nii.gz")


def test_views_with_different_frame_counts_are_refused(src, tmp_path):
    rewrite(src / "la_4ch.nii.gz", load(src / "la_4ch.nii.gz")[0][..., :-1])
    err = refused(src, tmp_path / "out", "views have different frame counts", "raw")
    assert "'la_4ch': 19" in err.reason and "'sa': 20" in err.reason


# ---- affines --------------------------------------------------------------------------------

def _singular(a):
    a = a.copy()
    a[:3, 2] = a[:3, 0]
    return a


def _spacing(a):
    a = a.copy()
    a[:3, 2] *= 40.0          # SAX slices 400 mm apart
    return a


def _non_finite(a):
    a = a.copy()
    a[0, 3] = np.nan
    return a


@pytest.mark.parametrize("damage, match", [
    (_singular, "affine is singular"),
    (_spacing, r"voxel spacing \[1.827, 1.827, 400.0\] mm is implausible"),
    (_non_finite, "affine contains non-finite values"),
], ids=["singular", "spacing", "nan"])
def test_bad_affines_are_refused(src, tmp_path, damage, match):
    data, affine, header = load(src / "sa.nii.gz")
    img = nib.Nifti1Image(data, damage(affine))      # sform only: a qform needs a rotation
    img.set_sform(damage(affine), code=1)
    img.set_qform(None, code=0)
    nib.save(img, src / "sa.nii.gz")
    assert not np.allclose(load(src / "sa.nii.gz")[1], affine, equal_nan=True)
    refused(src, tmp_path / "out", match, "sa.nii.gz")


# ---- LAX planes against the SAX stack -------------------------------------------------------

def test_lax_sax_intersections_have_known_lengths():
    # SAX: 100 x 100 pixels of 2 mm (FOV x, y in [-1, 199] mm), 10 slices at z = 0, 10, ... 90
    sax = np.diag([2.0, 2.0, 10.0, 1.0])
    # LAX: the plane x = 100 mm, i along y, j along z; FOV y in [-1, 199], z in [-41, 159]
    lax = np.eye(4)
    lax[:3, :3] = np.array([[0, 0, 6.0], [2.0, 0, 0], [0, 2.0, 0]])
    lax[:3, 3] = [100.0, 0.0, -40.0]
    angle, lengths = lax_sax_intersections(lax, (100, 100, 1), sax, (100, 100, 10))
    assert angle == pytest.approx(90.0) and np.allclose(lengths, 200.0)
    # the LAX FOV moved up by 100 mm: slices at z < 59 mm are outside it
    up = lax.copy()
    up[2, 3] += 100.0
    _, lengths = lax_sax_intersections(up, (100, 100, 1), sax, (100, 100, 10))
    assert np.allclose(lengths, [0, 0, 0, 0, 0, 0, 200, 200, 200, 200])
    # 500 mm to the side (x = 600): the line misses every SAX slice's FOV
    side = lax.copy()
    side[0, 3] += 500.0
    _, lengths = lax_sax_intersections(side, (100, 100, 1), sax, (100, 100, 10))
    assert not lengths.any()
    with pytest.raises(InputError, match=r"cuts 0 of 10 SAX slices .*need 5"):
        validate_lax_geometry("S1", "la.nii.gz", (100, 100, 1, 5), side, (100, 100, 10, 5), sax)
    # a plane parallel to the slices, and one at 20 deg from them
    flat = np.diag([2.0, 2.0, 6.0, 1.0])
    flat[2, 3] = 45.0
    angle, lengths = lax_sax_intersections(flat, (100, 100, 1), sax, (100, 100, 10))
    assert angle == pytest.approx(0.0) and not lengths.any()
    c, s = np.cos(np.deg2rad(20)), np.sin(np.deg2rad(20))
    tilted = flat.copy()                                        # rotated 20 deg about x
    tilted[:3, :3] = np.array([[1, 0, 0], [0, c, -s], [0, s, c]]) @ flat[:3, :3]
    assert lax_sax_intersections(tilted, (100, 100, 1), sax, (100, 100, 10))[0] == pytest.approx(20.0)
    with pytest.raises(InputError, match=r"20.0 deg from parallel"):
        validate_lax_geometry("S1", "la.nii.gz", (100, 100, 1, 5), tilted, (100, 100, 10, 5), sax)
    validate_lax_geometry("S1", "la.nii.gz", (100, 100, 1, 5), lax, (100, 100, 10, 5), sax)


def _moved(sax_affine, lax_affine):
    moved = lax_affine.copy()
    moved[:3, 3] += 500.0 * plane_normal(lax_affine)            # 500 mm off its plane
    return moved


def _slid(sax_affine, lax_affine):
    moved = lax_affine.copy()
    moved[:3, 3] += 400.0 * plane_normal(sax_affine)            # 400 mm along the long axis
    return moved


def _parallel(sax_affine, lax_affine):
    flat = sax_affine.copy()                                    # the SAX plane's axes
    flat[:3, 2] *= 0.6                                          # 6 mm thick
    return flat


@pytest.mark.parametrize("view, move, match", [
    ("la_2ch", _moved, r"LAX plane cuts 0 of \d+ SAX slices inside both fields of view"),
    ("la_3ch", _slid, r"LAX plane cuts 0 of \d+ SAX slices"),
    ("la_4ch", _parallel, r"LAX plane is 0.0 deg from parallel to the SAX slices"),
], ids=["500mm-off-plane", "400mm-along-axis", "parallel"])
def test_lax_planes_that_miss_the_sax_stack_are_refused(src, tmp_path, view, move, match):
    sax_affine = load(src / "sa.nii.gz")[1]
    data, affine, _ = load(src / f"{view}.nii.gz")
    rewrite(src / f"{view}.nii.gz", affine=move(sax_affine, affine))
    refused(src, tmp_path / "out", match, f"{view}.nii.gz")


# ---- frame interval -------------------------------------------------------------------------

@pytest.mark.parametrize("pixdim4, units", [(0.0, "sec"), (1.0, "sec"), (np.nan, "sec"),
                                            (2.8, "msec")],
                         ids=["missing", "nibabel-default-1s", "nan", "repetition-time-ms"])
def test_implausible_frame_interval_is_not_recorded(src, tmp_path, caplog, pixdim4, units):
    """Not an input fault (images are usable; converters put 1 s, TR or nothing there): the
    interval is dropped with a warning, so the heart rate becomes unknown rather than wrong."""
    img = nib.load(src / "la_2ch.nii.gz")
    img = nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, img.header)
    img.header.set_xyzt_units("mm", units)
    img.header["pixdim"][4] = pixdim4
    nib.save(img, src / "la_2ch.nii.gz")
    outputs = {v: tmp_path / "out" / f"{v}.nii.gz" for v in VIEWS}
    with caplog.at_level(logging.WARNING):
        report = ingest_images(src, SUBJECT, outputs, tmp_path / "out" / "ingest.json")
    assert report["views"]["la_2ch"]["frame_interval_s"] is None
    assert report["views"]["sa"]["frame_interval_s"] > 0
    assert frame_interval(nib.load(outputs["la_2ch"]).header) is None       # written as 0
    if pixdim4:
        assert f"subject {SUBJECT}: la_2ch.nii.gz" in caplog.text and "ignored" in caplog.text


# ---- labels ---------------------------------------------------------------------------------

def _label_affine(src):
    data, affine, _ = load(src / "label_sa.nii.gz")
    affine[:3, 3] += [0.0, 0.0, 5.0]
    save_nifti(src / "label_sa.nii.gz", data, affine)


def _label_shape(src):
    data, affine, _ = load(src / "label_la_4ch.nii.gz")
    save_nifti(src / "label_la_4ch.nii.gz", data[..., :-1], affine)


def _label_fraction(src):
    data, affine, _ = load(src / "label_sa.nii.gz")
    data = data.astype(np.float32)
    data[data == 2] = 1.5
    save_nifti(src / "label_sa.nii.gz", data, affine)


def _label_nan(src):
    data, affine, _ = load(src / "label_la_2ch.nii.gz")
    data = data.astype(np.float32)
    data[0, 0, 0, 0] = np.nan
    save_nifti(src / "label_la_2ch.nii.gz", data, affine)


def _label_unknown(src):
    data, affine, _ = load(src / "label_la_3ch.nii.gz")
    data = data.copy()
    data[0, 0, 0, 0] = 9
    save_nifti(src / "label_la_3ch.nii.gz", data, affine)


def _label_one_frame(src):
    data, affine, _ = load(src / "label_sa.nii.gz")
    data = data.copy()
    data[..., 1:] = 0
    save_nifti(src / "label_sa.nii.gz", data, affine)


def _label_rgb(src):
    data, affine, _ = load(src / "label_sa.nii.gz")
    rgb = np.zeros(data.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, affine), src / "label_sa.nii.gz")


def _label_missing(src):
    (src / "label_sa.nii.gz").unlink()


@pytest.mark.parametrize("damage, match, bad_file", [
    (_label_affine, "label affine differs from the image affine", "label_sa.nii.gz"),
    (_label_shape, r"label shape \(120, 120, 1, 19\) != image shape \(120, 120, 1, 20\)", "label_la_4ch.nii.gz"),
    (_label_fraction, "labels are not integers", "label_sa.nii.gz"),
    (_label_nan, "labels contain NaN or infinite values", "label_la_2ch.nii.gz"),
    (_label_unknown, r"unexpected label values \[9\] for view la_3ch", "label_la_3ch.nii.gz"),
    (_label_one_frame, "ED and ES need two labelled frames", "label_sa.nii.gz"),
    (_label_rgb, "label data type RGB .* is not an integer label map", "label_sa.nii.gz"),
    (_label_missing, "file is missing", "label_sa.nii.gz"),
], ids=["affine", "shape", "non-integer", "nan", "unknown-value", "one-labelled-frame", "rgb",
        "missing"])
def test_bad_labels_are_refused_and_nothing_is_written(src, tmp_path, damage, match, bad_file):
    damage(src)
    out = tmp_path / "out"
    with pytest.raises(InputError, match=match) as info:
        ingest_labels(src, SUBJECT, {v: out / f"label_{v}.nii.gz" for v in VIEWS})
    assert info.value.subject == SUBJECT and info.value.path.endswith(bad_file)
    assert not out.exists() or not any(out.iterdir())
