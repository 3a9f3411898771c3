"""DICOM ingest cross-checked against dcm2niix, an independent converter, and JPEG members.

The synthetic UK Biobank zips (cinerecon.synth.dicom, plain and with the demo's quirks) are
converted by ingest and by dcm2niix (the PyPI package ships the binary; it is a test
dependency, so a missing one fails these tests instead of skipping them). The two are
compared in world space: every voxel centre of a dcm2niix image, mapped through its affine,
must coincide (to 1e-3 mm) with a voxel centre of one ingest view, and the values there must
be equal. So dcm2niix's own axis order, row flip and file splitting need no special case, and
both affines are checked wherever dcm2niix put a voxel. The differences the comparison
accounts for are listed in docs/design-notes.md, "DICOM ingest cross-checked with dcm2niix".
"""

import io
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.uid import (JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1,
                         JPEGLSLossless, JPEGLSNearLossless, MPEG2MPML)

from cinerecon.io.nifti import InputError, save_nifti
from cinerecon.io.subject import VIEWS
from cinerecon.io.ukbb_dicom import ingest_ukbb_zips
from cinerecon.labels import LAX_VIEWS
from cinerecon.synth import heart as H
from cinerecon.synth import scanner as S
from cinerecon.synth.cohort import subject_rng
from cinerecon.synth.dicom import write_ukbb_zips

EID = "2345678"
ACQ = S.AcquisitionConfig(n_frames=4, sax_matrix=(40, 34), lax_matrix=(44, 38))
TOL_MM = 1e-3
# The demo's quirks (config/demo_dicom.yaml): mixed SAX and LAX series, slice 4 acquired twice
# (the first copy corrupted), RLE Lossless, shuffled names/numbers, manifest.cvs.
QUIRKY = {"sax_layout": "mixed", "lax_layout": "mixed", "duplicate_slice": 4, "compress": True,
          "shuffle": True, "manifest_name": "manifest.cvs"}
pytestmark = pytest.mark.filterwarnings("error::UserWarning")


# ---- fixtures -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dcm2niix_bin():
    """The dcm2niix binary: the PyPI package's, else one on PATH. Missing fails, never skips."""
    path = None
    try:
        import dcm2niix
        path = getattr(dcm2niix, "bin", None)
    except ImportError:
        pass
    path = path or shutil.which("dcm2niix")
    if not path or not Path(path).is_file():
        pytest.fail("dcm2niix is not installed: it is a test dependency of cinerecon "
                    "(pip install -e '.[test]' installs the PyPI package dcm2niix, which ships "
                    "the binary)")
    return str(path)


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    """NIfTI cines on the synthetic cohort's planned UK Biobank geometry (a SAX stack
    perpendicular to a tilted long axis, three LAX planes through it, 1.83 mm pixels,
    non-square matrices) with random int16 pixels, negative ones included: any flip,
    transposition, misplaced slice or misordered frame changes values. (Rendering the heart
    would take seconds and add nothing to a comparison of exact values.)"""
    folder = tmp_path_factory.mktemp("d2n") / EID
    rng = subject_rng(5, 1, 0)
    params = H.sample_params(rng, ACQ.n_frames, ACQ.impaired_fraction, ACQ.lv_edv_range,
                             ACQ.lv_aspect_range, ACQ.wall_range, ACQ.anatomy())
    model = H.HeartModel(params)
    planes = [S.plan_sax(model, ACQ, rng)] + [S.plan_lax(model, v, ACQ, rng) for v in LAX_VIEWS]
    for plane in planes:
        shape = plane.shape + (plane.n_slices, ACQ.n_frames)
        save_nifti(folder / f"{plane.name}.nii.gz",
                   rng.integers(-300, 2500, shape).astype(np.int16), plane.affine, 0.2)
    return folder


@pytest.fixture(scope="module")
def plain(tmp_path_factory, subject):
    """Ingest's views of the subject's zips without quirks (uncompressed pixels)."""
    return ingest(tmp_path_factory.mktemp("plain"), subject, {})[1]


def ingest(tmp_path, subject, quirks, tag="a"):
    """Write the subject's zips with quirks and ingest them:
    (zips, {view: (data, affine)}, meta)."""
    zips = write_ukbb_zips(subject, EID, tmp_path / f"zips_{tag}", quirks)
    out = tmp_path / f"nifti_{tag}"
    meta = ingest_ukbb_zips(EID, list(zips.values()), out, out / "meta.json")
    views = {}
    for view in VIEWS:
        img = nib.load(out / f"{view}.nii.gz")
        views[view] = (np.asanyarray(img.dataobj), img.affine)
    return zips, views, meta


def unzip(zips, dest: Path) -> list:
    """Extract every DICOM member (not the manifest) of the zips: their paths."""
    files = []
    for path in zips.values():
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if Path(info.filename).name.lower().startswith("manifest."):
                    continue
                target = dest / Path(path).stem / info.filename
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(info))
                files.append(target)
    return sorted(files)


def run_dcm2niix(binary, source: Path, out: Path, *options) -> list:
    """Convert source (a folder, or one file with -s y) into out: [(name, data 4D, affine)]."""
    out.mkdir(parents=True)
    proc = subprocess.run([binary, "-z", "n", "-b", "n", *options, "-o", str(out), str(source)],
                          check=False, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        pytest.fail(f"dcm2niix exited {proc.returncode} on {source}:\n{proc.stdout}\n{proc.stderr}")
    images = []
    for path in sorted(out.glob("*.nii")):
        img = nib.load(path)
        data = np.asanyarray(img.dataobj)
        images.append((path.name, data.reshape(data.shape + (1,) * (4 - data.ndim)), img.affine))
    if not images:
        pytest.fail(f"dcm2niix wrote no NIfTI for {source}:\n{proc.stdout}\n{proc.stderr}")
    return images


# ---- the comparison ----------------------------------------------------------------------

def grid_indices(shape, affine, grid_shape, grid_affine, tol_mm=TOL_MM):
    """Indices (3, N) on the grid (grid_shape, grid_affine) of every voxel centre of an image
    (shape, affine), in C order, or (None, why) when a centre is more than tol_mm from every
    grid voxel centre, outside the grid, or two centres share one grid voxel."""
    idx = np.indices(shape[:3]).reshape(3, -1).astype(float)
    world = affine[:3, :3] @ idx + affine[:3, 3:]
    on_grid = np.linalg.solve(grid_affine[:3, :3], world - grid_affine[:3, 3:])
    near = np.rint(on_grid)
    error = np.linalg.norm(grid_affine[:3, :3] @ near + grid_affine[:3, 3:] - world, axis=0).max()
    if error > tol_mm:
        return None, f"voxel centres up to {error:.4f} mm off the grid (tolerance {tol_mm} mm)"
    near = near.astype(int)
    if (near < 0).any() or (near >= np.array(grid_shape[:3])[:, None]).any():
        return None, "voxel centres outside the grid"
    if len({tuple(v) for v in near.T}) != near.shape[1]:
        return None, "two voxel centres on one grid voxel"
    return near, ""


def locate(affine, data, views):
    """(view, grid indices) of the one ingest view on whose voxel grid the image lies."""
    found, why = [], {}
    for view, (grid, grid_affine) in views.items():
        near, why[view] = grid_indices(data.shape, affine, grid.shape, grid_affine)
        if near is not None:
            found.append((view, near))
    assert len(found) == 1, f"the image lies on {len(found)} ingest views' grids: {why}"
    return found[0]


def same_frame(data, t, grid, near, grid_t) -> bool:
    return np.array_equal(data[..., t].reshape(-1), grid[near[0], near[1], near[2], grid_t])


def kept_rows(meta, view):
    """Ingest's series rows (slice k -> the series/acquisition it kept) of a view."""
    return meta["views"][view]["series"]


def coverage(views):
    return {v: np.zeros(d.shape, dtype=int) for v, (d, _) in views.items()}


def assert_covered_once(count):
    for view, c in count.items():
        assert c.min() == 1 and c.max() == 1, \
            f"{view}: dcm2niix's images cover voxel-frames {c.min()}..{c.max()} times, not once"


def test_comparison_detects_shifted_affines_and_flipped_pixels():
    """The helper that the dcm2niix comparison relies on must fail when it should."""
    rng = np.random.default_rng(0)
    rot, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag((1.8, 1.6, 10.0))
    affine[:3, 3] = rng.normal(0, 80, 3)
    data = rng.integers(-500, 500, (6, 5, 3, 2)).astype(np.int16)
    views = {"sa": (data, affine)}

    def check(d, a):
        _, near = locate(a, d, views)
        return all(same_frame(d, t, data, near, t) for t in range(2))

    assert check(data, affine)
    # dcm2niix's way: rows stored bottom-up, the affine's j column negated and its origin moved
    flip = np.eye(4)
    flip[1, 1], flip[1, 3] = -1, data.shape[1] - 1
    assert check(data[:, ::-1], affine @ flip)
    # one slice, as dcm2niix writes one SAX series, with its own (thickness) z spacing
    one = affine.copy()
    one[:3, 3] = affine[:3, :3] @ [0, 0, 2] + affine[:3, 3]
    one[:3, 2] *= 0.8
    assert check(data[:, :, 2:3], one)
    for shift_mm in (0.01, 0.5):                      # off the grid: no view is found
        moved = affine.copy()
        moved[:3, 3] += shift_mm * rot[:, 0]
        with pytest.raises(AssertionError, match="lies on 0"):
            locate(moved, data, views)
    stretched = affine.copy()                         # z spacing 0.01 mm too large
    stretched[:3, 2] *= 1.001
    assert grid_indices(data.shape, stretched, data.shape, affine)[0] is None
    moved = affine.copy()                             # a whole voxel off: on the grid, wrong values
    moved[:3, 3] += affine[:3, 0]
    assert not check(data[:5], moved)
    assert not check(data[:, ::-1], affine)           # a flip the affine does not say
    assert not check(data[..., ::-1], affine)         # frames in the wrong order


# ---- dcm2niix on whole series (its 4D stacking) ----------------------------------------

def frame_of(meta, view, trigger_ms) -> int:
    """Ingest's frame index (frames are ordered by TriggerTime) of an image's TriggerTime."""
    triggers = np.array(meta["views"][view]["trigger_times_ms"])
    t = int(np.argmin(np.abs(triggers - trigger_ms)))
    assert abs(triggers[t] - trigger_ms) < 0.5, (view, trigger_ms, triggers)
    return t


@pytest.mark.parametrize("quirks", [
    {},
    {"lax_layout": "mixed", "duplicate_slice": 3, "compress": True, "shuffle": True,
     "manifest_name": "manifest.cvs"},
], ids=["plain", "quirky-separate-sax"])
def test_dcm2niix_series_match_ingest(tmp_path, subject, dcm2niix_bin, quirks):
    """dcm2niix's default conversion: one 4D file per series (SAX: one per slice; a mixed
    LAX series split by orientation), rows flipped, frames in InstanceNumber order. Every
    file must lie on an ingest view's grid and hold ingest's frames (the one at each image's
    TriggerTime), except the corrupted first acquisition of a slice acquired twice (dcm2niix
    converts both; ingest keeps the later one); together they cover every ingest voxel and
    frame once. (A mixed SAX series dcm2niix cannot stack: see the design notes; the
    image-by-image test covers it.)"""
    zips, views, meta = ingest(tmp_path, subject, quirks)
    headers = []
    for path in unzip(zips, tmp_path / "dicom"):
        h = pydicom.dcmread(path, stop_before_pixels=True)
        position = np.diag([-1.0, -1.0, 1.0]) @ np.array(h.ImagePositionPatient, float)
        headers.append((int(h.SeriesNumber), position, int(h.InstanceNumber), float(h.TriggerTime)))
    images = run_dcm2niix(dcm2niix_bin, tmp_path / "dicom", tmp_path / "d2n", "-f", "s%s")
    count, dropped = coverage(views), []
    for name, data, affine in images:
        view, near = locate(affine, data, views)
        series = int(re.match(r"s(\d+)", name).group(1))
        slices = set(near[2].tolist())
        assert len(slices) == 1, f"{name}: one dcm2niix file per slice expected, got {slices}"
        (k,) = slices
        grid, grid_affine = views[view]
        if series != kept_rows(meta, view)[k]["series_number"]:
            dropped.append((view, k))
            continue
        origin = (grid_affine @ [0, 0, k, 1])[:3]       # where the slice's images are
        stacked = sorted((number, trigger) for s_, position, number, trigger in headers
                         if s_ == series and np.linalg.norm(position - origin) < 0.01)
        assert data.shape[3] == grid.shape[3] == len(stacked), name
        for v, (_, trigger) in enumerate(stacked):
            t = frame_of(meta, view, trigger)
            assert same_frame(data, v, grid, near, t), \
                f"{name} volume {v} differs from {view} frame {t}"
            count[view][near[0], near[1], near[2], t] += 1
    assert_covered_once(count)
    dup = quirks.get("duplicate_slice")
    assert dropped == ([] if dup is None else [("sa", dup)])


# ---- dcm2niix image by image (every quirk, every decoder) ------------------------------

def encode_jpeg_lossless(image: np.ndarray, predictor: int = 1) -> bytes:
    """ITU-T T.81 lossless JPEG (process 14, Huffman) of a 2D 16-bit image: one component,
    precision 16, point transform 0, predictor 1-7 (1 = DICOM's 'SV1' syntax). Signed data go
    in as their two's complement bits (DICOM PS3.5 8.2.1). Every Huffman code is 5 bits."""
    if image.ndim != 2 or image.dtype.itemsize != 2:
        raise ValueError("need a 2D 16-bit image")
    x = image.astype(np.uint16).astype(np.int64)
    ra, rb, rc = (np.zeros_like(x) for _ in range(3))
    ra[:, 1:], rb[1:, :], rc[1:, 1:] = x[:, :-1], x[:-1, :], x[:-1, :-1]
    pred = {1: ra, 2: rb, 3: rc, 4: ra + rb - rc, 5: ra + ((rb - rc) >> 1),
            6: rb + ((ra - rc) >> 1), 7: (ra + rb) >> 1}[predictor].copy()
    pred[0, :] = ra[0, :]            # first row: the left neighbour
    pred[1:, 0] = rb[1:, 0]          # first column: the one above
    pred[0, 0] = 1 << 15             # first sample: 2^(P - Pt - 1)
    diff = (x - pred) & 0xFFFF
    diff = np.where(diff >= 0x8000, diff - 0x10000, diff).ravel()
    size = np.zeros(diff.shape, np.int64)
    nonzero = diff != 0
    size[nonzero] = np.floor(np.log2(np.abs(diff[nonzero]))).astype(np.int64) + 1
    size[diff == -0x8000] = 16       # category 16 has no additional bits
    bits = []
    for d, s in zip(diff.tolist(), size.tolist()):
        bits.append(format(s, "05b"))
        if 0 < s < 16:
            bits.append(format(d if d > 0 else d + (1 << s) - 1, f"0{s}b"))
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)
    data = int(stream, 2).to_bytes(len(stream) // 8, "big").replace(b"\xff", b"\xff\x00")

    def segment(marker, payload):
        return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload

    rows, cols = x.shape
    sof = bytes([16]) + rows.to_bytes(2, "big") + cols.to_bytes(2, "big") + bytes([1, 1, 0x11, 0])
    dht = bytes([0]) + bytes([0, 0, 0, 0, 17] + [0] * 11) + bytes(range(17))
    sos = bytes([1, 1, 0x00, predictor, 0, 0])
    return (b"\xff\xd8" + segment(0xC3, sof) + segment(0xC4, dht) + segment(0xDA, sos) + data
            + b"\xff\xd9")


def _encapsulated(ds, frame: bytes, syntax):
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = syntax
    return ds


def jpeg_lossless(predictor: int):
    """A DicomQuirks edit storing every image as lossless JPEG with the predictor."""
    syntax = JPEGLosslessSV1 if predictor == 1 else JPEGLossless

    def edit(ds, info):
        return _encapsulated(ds, encode_jpeg_lossless(ds.pixel_array, predictor), syntax)
    return edit


PER_IMAGE = {
    "quirky": QUIRKY,
    # SV1 (predictor 1), DICOM's usual lossless JPEG. Not predictors 5-7: dcm2niix's own
    # decoder gets them wrong on negative samples (see the design notes).
    "jpeg-lossless-sv1": {"sax_layout": "mixed", "lax_layout": "mixed", "duplicate_slice": 2,
                          "shuffle": True, "edit": jpeg_lossless(1)},
}


@pytest.mark.parametrize("case", list(PER_IMAGE))
def test_dcm2niix_images_match_ingest(tmp_path, subject, dcm2niix_bin, case):
    """dcm2niix on each DICOM file alone (-s y): its geometry and its own decoder (RLE, JPEG
    lossless) for every image, independent of how it would stack a series. Each image must lie
    on one slice of one ingest view and equal ingest's frame at its TriggerTime, unless it
    belongs to an acquisition ingest did not keep (the corrupted first copy of a slice acquired
    twice); the kept ones cover every ingest voxel and frame once."""
    quirks = PER_IMAGE[case]
    zips, views, meta = ingest(tmp_path, subject, quirks)
    files = unzip(zips, tmp_path / "dicom")
    count, dropped = coverage(views), []
    for n, path in enumerate(files):
        ((_, data, affine),) = run_dcm2niix(dcm2niix_bin, path, tmp_path / "d2n" / str(n),
                                            "-s", "y", "-f", "image")
        view, near = locate(affine, data, views)
        (k,) = set(near[2].tolist())
        header = pydicom.dcmread(path, stop_before_pixels=True)
        row = kept_rows(meta, view)[k]
        if (int(header.SeriesNumber), int(header.AcquisitionNumber)) != \
                (row["series_number"], row["acquisition_number"]):
            dropped.append((view, k))
            continue
        t = frame_of(meta, view, float(header.TriggerTime))
        grid = views[view][0]
        assert same_frame(data, 0, grid, near, t), f"{path.name} differs from {view} frame {t}"
        count[view][near[0], near[1], near[2], t] += 1
    assert_covered_once(count)
    dup = quirks.get("duplicate_slice")
    assert dropped == ([] if dup is None else [("sa", dup)] * ACQ.n_frames)


# ---- JPEG ------------------------------------------------------------------------------------

@pytest.mark.parametrize("predictor", [1, 6, 7])
def test_jpeg_lossless_members_decode_to_the_uncompressed_pixels(tmp_path, subject, plain,
                                                                 predictor):
    """Lossless JPEG (SV1 = predictor 1, the usual DICOM one; others as process 14) of signed
    pixels, negative ones included: ingest's pixels and affines are the uncompressed ones."""
    zips, jpeg, meta = ingest(tmp_path, subject, {"edit": jpeg_lossless(predictor)}, tag="jpeg")
    with zipfile.ZipFile(zips["sax"]) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dcm"))
        syntax = pydicom.dcmread(io.BytesIO(zf.read(name))).file_meta.TransferSyntaxUID
    assert syntax == (JPEGLosslessSV1 if predictor == 1 else JPEGLossless)
    for view in VIEWS:
        assert jpeg[view][0].dtype == np.int16
        assert np.array_equal(jpeg[view][0], plain[view][0]), view
        assert np.array_equal(jpeg[view][1], plain[view][1]), view
    assert meta["warnings"] == []


def test_jpeg_baseline_members_decode(tmp_path, subject):
    """8-bit JPEG Baseline (lossy; Pillow at quality 100): ingest's pixels are the original
    8-bit ones to within the codec's rounding."""
    originals = {}

    def edit(ds, info):
        u8 = ((ds.pixel_array.astype(np.int32) + 300) * 255 // 2800).astype(np.uint8)
        originals[(info["view"], info["slice"], info["frame"])] = u8
        buf = io.BytesIO()
        Image.fromarray(u8).save(buf, format="JPEG", quality=100)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.LossyImageCompression = "01"
        return _encapsulated(ds, buf.getvalue(), JPEGBaseline8Bit)

    _, views, _ = ingest(tmp_path, subject, {"edit": edit})
    for (view, k, t), u8 in originals.items():
        got = views[view][0][:, :, k, t].T
        assert np.abs(got.astype(int) - u8).max() <= 2, (view, k, t)


@pytest.mark.parametrize("syntax", [JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless,
                                    JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless])
def test_every_jpeg_syntax_the_readme_names_has_an_installed_decoder(syntax):
    """The README promises baseline, extended, lossless and JPEG-LS: cinerecon's dependencies
    (pylibjpeg + pylibjpeg-libjpeg) must give pydicom a decoder for each, Pillow or not."""
    decoder = get_decoder(syntax)
    assert "pylibjpeg" in decoder.available_plugins, decoder.missing_dependencies


@pytest.mark.parametrize("case", ["plugins-missing", "no-decoder"])
def test_undecodable_member_is_refused_naming_subject_file_and_reason(tmp_path, subject,
                                                                      monkeypatch, case):
    if case == "plugins-missing":   # as without pylibjpeg-libjpeg, Pillow or gdcm
        decoder = get_decoder(JPEGLosslessSV1)
        monkeypatch.setattr(decoder, "_available", {})
        monkeypatch.setattr(decoder, "_unavailable",
                            {"pylibjpeg": ("pylibjpeg>=2.0", "pylibjpeg-libjpeg>=2.1")})
        edit, match = jpeg_lossless(1), r"JPEG Lossless.*no installed decoder.*pylibjpeg-libjpeg"
    else:                           # a compressed syntax pydicom cannot decode at all
        def edit(ds, info):
            return _encapsulated(ds, b"\x00" * 64, MPEG2MPML)
        match = r"MPEG2.*no pydicom decoder supports"
    zips = write_ukbb_zips(subject, EID, tmp_path / "zips", {"edit": edit})
    out = tmp_path / "out"
    with pytest.raises(InputError, match=match) as info:
        ingest_ukbb_zips(EID, list(zips.values()), out, out / "meta.json")
    err = info.value
    assert err.subject == EID and str(err).startswith(f"subject {EID}:")
    assert "file #" in err.path and ("_20209_" in err.path or "_20208_" in err.path)
    assert "cannot decode" in err.reason
    assert not out.exists() or not any(out.iterdir())
