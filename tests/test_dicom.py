"""UK Biobank cine DICOM zips -> NIfTI (cinerecon.io.ukbb_dicom) and the synthetic writer."""

import io
import json
import logging
import warnings
import zipfile

import nibabel as nib
import numpy as np
import pydicom
import pytest

from cinerecon.io.nifti import InputError, save_nifti
from cinerecon.io.subject import VIEWS
from cinerecon.io.ukbb_dicom import assign_lax_views, ingest_ukbb_zips, parse_manifest
from cinerecon.synth.cohort import generate_subject
from cinerecon.synth.dicom import DicomQuirks, write_ukbb_zips, zip_names
from cinerecon.synth.scanner import AcquisitionConfig

EID = "1234567"
# Tiny but complete: non-square matrices catch a rows/columns mix-up.
TINY = AcquisitionConfig(n_frames=4, sax_matrix=(40, 34), lax_matrix=(44, 38))
LPS = np.diag([-1.0, -1.0, 1.0])
pytestmark = pytest.mark.filterwarnings("error::UserWarning")   # e.g. invalid DICOM values


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    """A generated subject's NIfTI folder (the reference for round trips)."""
    folder = tmp_path_factory.mktemp("dicom") / EID
    generate_subject(EID, 3, 0, folder, TINY)
    return folder


def load(path):
    img = nib.load(path)
    return np.asanyarray(img.dataobj), img.affine, img.header


def convert(tmp_path, folder, quirks=None, zips=None, tag="a"):
    """Write the zips of `folder` with quirks, ingest them; return (out folder, meta)."""
    if zips is None:
        zips = list(write_ukbb_zips(folder, EID, tmp_path / f"zips_{tag}", quirks).values())
    out = tmp_path / f"out_{tag}"
    meta = ingest_ukbb_zips(EID, zips, out, out / "meta.json")
    return out, meta


def assert_same_as(reference, out):
    for view in VIEWS:
        ref, ref_affine, ref_header = load(reference / f"{view}.nii.gz")
        got, affine, header = load(out / f"{view}.nii.gz")
        assert got.dtype == np.int16, view
        assert got.shape == ref.shape, view
        assert np.array_equal(got, ref), view
        assert np.abs(affine - ref_affine).max() < 1e-4, view
        assert header.get_zooms()[3] == pytest.approx(ref_header.get_zooms()[3], rel=1e-6), view
        assert header["sform_code"] == 1 and header["qform_code"] == 1


def expect_error(tmp_path, folder, match, quirks=None, zips=None):
    """Ingest must fail with InputError naming the subject, and write nothing."""
    out = tmp_path / "out_err"
    if zips is None:
        zips = list(write_ukbb_zips(folder, EID, tmp_path / "zips_err", quirks).values())
    with pytest.raises(InputError, match=match) as info:
        ingest_ukbb_zips(EID, zips, out, out / "meta.json")
    assert info.value.subject == EID and str(info.value).startswith(f"subject {EID}:")
    assert not out.exists() or not any(out.iterdir())
    return info.value


# ---- round trips ----------------------------------------------------------------------------

@pytest.mark.parametrize("quirks", [
    {},
    {"sax_layout": "mixed", "lax_layout": "mixed"},
    {"compress": True},
    {"sax_layout": "mixed", "lax_layout": "mixed", "compress": True, "manifest_name": "manifest.cvs"},
], ids=["separate", "mixed", "rle", "mixed-rle-cvs"])
def test_round_trip_reproduces_generator(tmp_path, subject, quirks):
    out, meta = convert(tmp_path, subject, quirks)
    assert_same_as(subject, out)
    if quirks.get("lax_layout") == "mixed":
        assert {meta["views"][f"la_{v}"]["identified_by"] for v in ("2ch", "3ch", "4ch")} == {"geometry"}
    else:
        assert meta["views"]["la_4ch"]["identified_by"] == "description"
    if quirks.get("compress"):
        with zipfile.ZipFile(tmp_path / "zips_a" / zip_names(EID)["sax"]) as zf:
            name = next(n for n in zf.namelist() if n.endswith(".dcm"))
            ds = pydicom.dcmread(io.BytesIO(zf.read(name)))
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless


def test_meta_records_timing_series_and_heart_rate(tmp_path, subject):
    out, meta = convert(tmp_path, subject)
    params = json.loads((subject / "truth" / "params.json").read_text())
    saved = json.loads((out / "meta.json").read_text())
    assert saved == meta
    assert meta["subject"] == EID
    assert meta["frame_interval_s"] == pytest.approx(params["frame_interval_s"], rel=1e-6)
    rr = round(60000 / params["heart_rate_bpm"])               # NominalInterval is whole ms
    assert meta["rr_interval_ms"] == rr and meta["heart_rate_source"] == "NominalInterval"
    assert meta["heart_rate_bpm"] == pytest.approx(60000 / rr, abs=1e-3)
    sa = meta["views"]["sa"]
    assert sa["trigger_times_ms"] == pytest.approx(
        [1000 * params["frame_interval_s"] * t for t in range(TINY.n_frames)], abs=1e-2)
    n = sa["shape"][2]
    assert [s["slice"] for s in sa["series"]] == list(range(n))
    assert [s["description"] for s in sa["series"]] == [f"CINE_segmented_SAX_b{k + 1}" for k in range(n)]
    assert np.allclose(np.diff([s["position_mm"] for s in sa["series"]]), 10.0, atol=1e-4)
    assert sa["slice_spacing_mm"] == pytest.approx(10.0) and sa["slice_thickness_mm"] == 8.0
    for v in ("2ch", "3ch", "4ch"):
        assert meta["views"][f"la_{v}"]["series"][0]["description"] == f"CINE_segmented_LAX_{v[0]}Ch"
    assert meta["warnings"] == [] and meta["ignored_series"] == {}
    assert set(meta["source"]["manifest"]) == set(zip_names(EID).values())


def test_pixel_axes_and_affine_follow_the_dicom_standard(tmp_path):
    """Independent of the writer's inverse: DICOM pixel (row r, column c) of slice k sits at
    IPP + c * PixelSpacing[1] * IOP[:3] + r * PixelSpacing[0] * IOP[3:] (LPS), and the NIfTI
    voxel (i, j, k) = (c, r, k) must hold the same value at the same (RAS) place."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "aniso"
    rot, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rot[:, 2] = np.cross(rot[:, 0], rot[:, 1])       # right-handed: slices along i x j
    sax_affine = np.eye(4)
    sax_affine[:3, :3] = rot @ np.diag((1.25, 2.0, 9.0))
    sax_affine[:3, 3] = rng.normal(0, 50, 3)
    centre = sax_affine[:3, :3] @ [19.5, 14.5, 1.0] + sax_affine[:3, 3]
    affines = {"sa": sax_affine}
    for view, angle in (("la_2ch", 90), ("la_3ch", 45), ("la_4ch", 0)):
        # LAX planes contain the stack normal (rot[:, 2]) and pass through the stack's centre
        a = np.deg2rad(angle)
        i_dir = np.cos(a) * rot[:, 0] + np.sin(a) * rot[:, 1]
        axes = np.stack([i_dir, rot[:, 2], np.cross(i_dir, rot[:, 2])], axis=1)
        affine = np.eye(4)
        affine[:3, :3] = axes @ np.diag((1.5, 1.1, 6.0))
        affine[:3, 3] = centre - affine[:3, :3] @ [17.5, 21.5, 0.0]
        affines[view] = affine
    for view, shape in {"sa": (40, 30, 3, 3), "la_2ch": (36, 44, 1, 3), "la_3ch": (36, 44, 1, 3),
                        "la_4ch": (36, 44, 1, 3)}.items():
        data = rng.integers(-2000, 3000, size=shape).astype(np.int16)   # signed values too
        save_nifti(folder / f"{view}.nii.gz", data, affines[view], 0.3)
    out, meta = convert(tmp_path, folder)
    assert_same_as(folder, out)
    data, affine, _ = load(out / "sa.nii.gz")
    assert np.linalg.det(affine[:3, :3]) > 0
    with zipfile.ZipFile(tmp_path / "zips_a" / zip_names(EID)["sax"]) as zf:
        for name in [n for n in zf.namelist() if n.endswith(".dcm")][::4]:
            ds = pydicom.dcmread(io.BytesIO(zf.read(name)))
            pixels = ds.pixel_array
            assert pixels.shape == (30, 40)                          # Rows = Y, Columns = X
            ipp = np.array(ds.ImagePositionPatient, float)
            iop = np.array(ds.ImageOrientationPatient, float)
            dr, dc = map(float, ds.PixelSpacing)
            assert (dr, dc) == pytest.approx((2.0, 1.25))
            k = int(np.argmin([abs(np.linalg.norm(affine @ [0, 0, kk, 1] - np.r_[LPS @ ipp, 1]))
                               for kk in range(3)]))
            t = int(round(float(ds.TriggerTime) / 300.0))
            for r, c in [(0, 0), (29, 0), (0, 39), (17, 5)]:
                lps = ipp + c * dc * iop[:3] + r * dr * iop[3:]
                assert np.allclose(affine @ [c, r, k, 1], np.r_[LPS @ lps, 1], atol=1e-4)
                assert data[c, r, k, t] == pixels[r, c]


# ---- real-world quirks ----------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["separate", "mixed"])
def test_slice_acquired_twice_keeps_the_later_one(tmp_path, subject, layout):
    """The first acquisition of slice 3 is corrupted, the later repeat is true: an exact
    round trip proves the repeat was kept; the warning says which and why."""
    out, meta = convert(tmp_path, subject, {"sax_layout": layout, "duplicate_slice": 3})
    assert_same_as(subject, out)
    (warning,) = meta["warnings"]
    assert "acquired 2 times" in warning and "kept" in warning and "latest" in warning
    kept = meta["views"]["sa"]["series"][3]
    if layout == "separate":
        assert kept["series_number"] == max(s["series_number"] for s in meta["views"]["sa"]["series"])
    else:
        assert kept["acquisition_number"] == 2
    assert f"#{kept['series_number']}" in warning.split("kept")[1]


def test_incomplete_repeat_loses_to_a_complete_first_acquisition(tmp_path, subject):
    drop = lambda ds, info: None if info["repeat"] and info["frame"] == 1 else ds  # noqa: E731
    out, meta = convert(tmp_path, subject, {"duplicate_slice": 3, "edit": drop})
    (warning,) = meta["warnings"]
    assert "(incomplete)" in warning
    ref = load(subject / "sa.nii.gz")[0]
    got = load(out / "sa.nii.gz")[0]
    first = np.clip(np.roll(ref[:, :, 3].astype(np.int32), 3, axis=0) + 150, -32768, 32767)
    assert np.array_equal(got[:, :, 3], first)              # the writer's corrupted first copy
    assert np.array_equal(np.delete(got, 3, axis=2), np.delete(ref, 3, axis=2))


def test_shuffled_names_and_numbers_do_not_change_the_result(tmp_path, subject):
    plain, _ = convert(tmp_path, subject, {"duplicate_slice": 5}, tag="plain")
    shuffled, meta = convert(tmp_path, subject, {"duplicate_slice": 5, "shuffle": True}, tag="shuffled")
    assert_same_as(subject, shuffled)
    for view in VIEWS:
        a, b = load(plain / f"{view}.nii.gz"), load(shuffled / f"{view}.nii.gz")
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    descriptions = [s["description"] for s in meta["views"]["sa"]["series"]]
    assert descriptions != sorted(descriptions, key=lambda d: int(d.rsplit("b", 1)[1]))
    with zipfile.ZipFile(tmp_path / "zips_shuffled" / zip_names(EID)["sax"]) as zf:
        assert not any(n.startswith("0") for n in zf.namelist())       # UID-like names


def test_lax_views_are_assigned_by_geometry_not_order():
    four = np.array([0.45, -0.3, -0.84])
    two = np.cross(four, [-0.6, 0.55, -0.56])                        # both contain the long axis
    two /= np.linalg.norm(two)
    c, s = np.cos(np.deg2rad(-50)), np.sin(np.deg2rad(-50))
    three = c * four + s * two                                       # 50 deg from the 4ch
    for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0], [2, 1, 0]):
        normals = [[four, two, three][i] for i in order]
        normals[0] = -normals[0]                                     # the sign of a normal is arbitrary
        assert assign_lax_views(normals) == [["4ch", "2ch", "3ch"][i] for i in order]
    at = [np.cos(np.deg2rad(a)) * four + np.sin(np.deg2rad(a)) * two for a in (0, 60, 120)]
    with pytest.raises(ValueError, match="orthogonal"):    # three planes 60 deg apart
        assign_lax_views(at)


# ---- refusals -------------------------------------------------------------------------------

def _tilted(ds, deg):
    """Rotate a slice's orientation by deg about its row direction (a non-parallel slice)."""
    iop = np.array(ds.ImageOrientationPatient, float)
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    a = np.deg2rad(deg)
    ds.ImageOrientationPatient = [f"{x:.10f}" for x in np.r_[row, np.cos(a) * col + np.sin(a) * normal]]
    return ds


def test_non_parallel_slice_is_refused(tmp_path, subject):
    def edit(ds, info):
        return _tilted(ds, 2.0) if info["view"] == "sa" and info["slice"] == 4 else ds

    err = expect_error(tmp_path, subject, "not parallel", {"edit": edit})
    assert "CINE_segmented_SAX_b5" in str(err) and zip_names(EID)["sax"] in err.path


def test_unequal_spacing_is_refused(tmp_path, subject):
    def edit(ds, info):
        if info["view"] == "sa" and info["slice"] == 6:
            iop = np.array(ds.ImageOrientationPatient, float)
            normal = np.cross(iop[:3], iop[3:])
            ds.ImagePositionPatient = [f"{x:.6f}" for x in
                                       np.array(ds.ImagePositionPatient, float) + 3.0 * normal]
        return ds

    expect_error(tmp_path, subject, "unequally spaced", {"edit": edit})


def test_missing_slice_is_refused_as_unequal_spacing(tmp_path, subject):
    edit = lambda ds, info: None if info["view"] == "sa" and info["slice"] == 2 else ds  # noqa: E731
    expect_error(tmp_path, subject, "unequally spaced.*missing", {"edit": edit})


def test_missing_frames_name_subject_zip_and_file_without_uids(tmp_path, subject):
    """The failing file is named by its position in the zip, series description and instance
    number: never by its member name (UID-like here, as often in real deliveries) or a UID."""
    seen = {"uids": set()}

    def edit(ds, info):
        seen["uids"] |= {info["member"].removesuffix(".dcm"), ds.SOPInstanceUID,
                         ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.FrameOfReferenceUID}
        if info["view"] == "sa" and info["slice"] == 5:
            seen["description"] = ds.SeriesDescription
            return None if info["frame"] == 2 else ds
        return ds

    err = expect_error(tmp_path, subject, r"3 of 4 frames", {"edit": edit, "shuffle": True})
    assert zip_names(EID)["sax"] in err.path and "file #" in err.path and ".dcm" not in str(err)
    assert f"'{seen['description']}' image " in err.path and seen["description"] in err.reason
    for uid in seen["uids"]:
        assert uid not in str(err)


def test_truncated_zip_is_refused(tmp_path, subject):
    zips = write_ukbb_zips(subject, EID, tmp_path / "zips", {})
    blob = zips["sax"].read_bytes()
    zips["sax"].write_bytes(blob[: len(blob) // 2])
    err = expect_error(tmp_path, subject, "not a readable zip", zips=list(zips.values()))
    assert err.path == str(zips["sax"])


def test_corrupt_zip_member_is_refused(tmp_path, subject):
    zips = write_ukbb_zips(subject, EID, tmp_path / "zips", {})
    with zipfile.ZipFile(zips["lax"]) as zf:
        info = zf.infolist()[3]
    blob = bytearray(zips["lax"].read_bytes())
    start = info.header_offset + 30 + len(info.filename) + 20
    blob[start:start + 40] = bytes(40)
    zips["lax"].write_bytes(bytes(blob))
    err = expect_error(tmp_path, subject, "cannot extract", zips=list(zips.values()))
    assert err.path.endswith(f"{zips['lax']} (file #4 of {len(zf.namelist())} in the zip)")
    assert info.filename not in str(err)


def test_zip_without_sax_series_is_refused(tmp_path, subject):
    zips = write_ukbb_zips(subject, EID, tmp_path / "zips", {})
    expect_error(tmp_path, subject, "no SAX cine series", zips=[zips["lax"]])

    def rename(ds, info):
        if info["view"] == "sa":
            ds.SeriesDescription = "CINE_segmented_SAX_InlineVF"
        return ds

    expect_error(tmp_path, subject, "no SAX cine series", {"edit": rename})


def test_dicom_without_pixel_data_is_refused(tmp_path, subject):
    def edit(ds, info):
        if info["view"] == "la_3ch" and info["frame"] == 1:
            del ds.PixelData
        return ds

    err = expect_error(tmp_path, subject, "no pixel data", {"edit": edit})
    assert zip_names(EID)["lax"] in err.path and "'CINE_segmented_LAX_3Ch' image 2)" in err.path


def test_files_of_two_patients_are_refused(tmp_path, subject):
    def edit(ds, info):
        if info["view"] == "la_2ch":
            ds.PatientID = "PID99999999"
        return ds

    err = expect_error(tmp_path, subject, "more than one patient", {"edit": edit})
    assert "PID" not in str(err)


# ---- manifest and privacy -------------------------------------------------------------------

def test_manifest_with_misspelled_column_and_commas_in_dates():
    text = ("filename,patientid,studyid,aet,date,series discription\n"
            "a.dcm,PID1,1,UKBB,Mar 15, 2016,CINE_segmented_SAX_b1\n"
            "b.dcm,PID1,1,UKBB,\"Mar 15, 2016\",CINE_segmented_LAX_4Ch\n"
            "c.dcm,PID1,1,UKBB,20160315,CINE_segmented_LAX\n\n")
    assert parse_manifest(text) == {"a.dcm": "CINE_segmented_SAX_b1",
                                    "b.dcm": "CINE_segmented_LAX_4Ch", "c.dcm": "CINE_segmented_LAX"}


def test_nothing_identifying_leaves_ingest(tmp_path, subject, caplog):
    quirks = {"sax_layout": "mixed", "lax_layout": "mixed", "duplicate_slice": 1, "shuffle": True}
    zips = write_ukbb_zips(subject, EID, tmp_path / "zips_a", quirks)
    with zipfile.ZipFile(zips["sax"]) as zf:
        ds = pydicom.dcmread(io.BytesIO(zf.read(next(n for n in zf.namelist() if n.endswith(".dcm")))))
        manifest = zf.read("manifest.csv").decode()
    family, given = str(ds.PatientName).split("^")
    secrets = [family, given, ds.PatientID, ds.PatientBirthDate, ds.OtherPatientIDs,
               ds.AccessionNumber, ds.StudyDate, ds.StudyInstanceUID, ds.SeriesInstanceUID,
               ds.SOPInstanceUID, ds.FrameOfReferenceUID]
    assert ds.PatientID in manifest and all(secrets)
    with caplog.at_level(logging.DEBUG):
        out, meta = convert(tmp_path, subject, zips=list(zips.values()))
    assert_same_as(subject, out)
    assert len(meta["warnings"]) == 2 and caplog.records
    texts = [(out / "meta.json").read_text(), caplog.text]
    for view in VIEWS:
        texts.append(nib.load(out / f"{view}.nii.gz").header.binaryblock.decode("latin-1"))
    for text in texts:
        for secret in secrets:
            assert str(secret) not in text


def test_quirks_reject_unknown_settings():
    with pytest.raises(ValueError, match="unknown"):
        DicomQuirks.from_dict({"sax_layuot": "mixed"})
    with pytest.raises(ValueError, match="sax_layout"):
        DicomQuirks(sax_layout="interleaved")


def test_invalid_header_values_are_read_without_echoing_them(tmp_path, subject, caplog):
    """pydicom's warnings quote the offending header value (here an invalid UID and date and an
    unknown character set carrying a made-up identifier): ingest reads quietly, says in
    meta.json how many warnings it withheld, lets no warning, log record or error text carry
    a value, and restores pydicom's settings and logger afterwards."""
    secrets = ["1.2.826.0.1.3680043.8.498.7654321.PATIENT", "15-03-2016", "PATIENT7654321"]

    def edit(ds, info):
        if info["view"] == "la_4ch":
            ds.SeriesInstanceUID = secrets[0]                    # invalid UI (letters)
            ds.AcquisitionDate = secrets[1]                      # invalid DA
            ds.SpecificCharacterSet = secrets[2]                 # unknown: warned even unvalidated
        return ds

    with warnings.catch_warnings():                              # the writer's own complaints
        warnings.simplefilter("ignore")
        zips = write_ukbb_zips(subject, EID, tmp_path / "zips_a", {"edit": edit})
    # control: plain pydicom reading echoes the values
    with zipfile.ZipFile(zips["lax"]) as zf:
        blobs = [zf.read(n) for n in zf.namelist() if n.endswith(".dcm")]
    with warnings.catch_warnings(record=True) as control:
        warnings.simplefilter("always")
        for blob in blobs:
            ds = pydicom.dcmread(io.BytesIO(blob))
            ds.get("SeriesInstanceUID"), ds.get("SeriesDescription"), ds.get("AcquisitionDate")
    assert all(any(x in str(w.message) for w in control) for x in secrets[::2])

    caplog.clear()
    mode = pydicom.config.settings.reading_validation_mode
    logger = logging.getLogger("pydicom")
    handlers, propagate = list(logger.handlers), logger.propagate
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.DEBUG):
        warnings.simplefilter("always")
        out, meta = convert(tmp_path, subject, zips=list(zips.values()))
    assert_same_as(subject, out)
    assert caught == [] and caplog.records                       # our own warnings still log
    assert pydicom.config.settings.reading_validation_mode == mode
    assert logger.handlers == handlers and logger.propagate == propagate
    (withheld,) = [w for w in meta["warnings"] if "withheld" in w]
    assert "warning(s) from the DICOM reader" in withheld
    for text in (caplog.text, (out / "meta.json").read_text()):
        for secret in [*secrets, "7654321"]:
            assert secret not in text

    # the same files refused for another reason: the error names none of it either
    drop = lambda ds, info: None if info["view"] == "la_4ch" and info["frame"] == 1 else edit(ds, info)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zips = list(write_ukbb_zips(subject, EID, tmp_path / "zips_err", {"edit": drop}).values())
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        err = expect_error(tmp_path, subject, "frames are missing", zips=zips)
    for secret in [*secrets, "7654321"]:
        assert secret not in str(err) and secret not in caplog.text


def test_lax_plane_that_misses_the_sax_stack_is_refused(tmp_path, subject):
    """The 2ch view's position moved 500 mm along its plane normal: it meets no SAX slice."""
    def edit(ds, info):
        if info["view"] == "la_2ch":
            iop = np.array(ds.ImageOrientationPatient, float)
            normal = np.cross(iop[:3], iop[3:])
            ds.ImagePositionPatient = [f"{x:.6f}" for x in
                                       np.array(ds.ImagePositionPatient, float) + 500.0 * normal]
        return ds

    err = expect_error(tmp_path, subject, r"LAX plane cuts 0 of \d+ SAX slices", {"edit": edit})
    assert err.path.endswith(f"{zip_names(EID)['lax']} (la_2ch)")
