"""Write a subject's NIfTI cines as UK-Biobank-style DICOM zips (for tests and benchmarks).

UK Biobank delivers cine CMR as one zip per subject and field: `{eid}_20209_2_0.zip`
(short axis) and `{eid}_20208_2_0.zip` (long axis), each holding one DICOM file per slice
and frame plus a `manifest.csv` (sometimes `manifest.cvs`) whose series-description column
is spelled `series discription` and whose dates contain unquoted commas.

The writer inverts the conventions of `cinerecon.io.ukbb_dicom` (see there): the NIfTI
array axis i runs along DICOM columns and j along rows, so a slice's `pixel_array` is
`data[:, :, k, t].T`; RAS affines become LPS ImagePositionPatient /
ImageOrientationPatient; PixelSpacing is (row spacing, column spacing) = (|a_j|, |a_i|).
Pixels are stored as signed 16-bit (PixelRepresentation 1), so int16 NIfTI cines round-trip
exactly. The slice axis of the NIfTI affine must point along i x j (as every cine written by
`cinerecon.synth` does): ingest orders slices along that normal.

Quirks of real deliveries can be switched on (`DicomQuirks`), and fake but plausible
patient identifiers are written into every file and the manifest, so tests can prove that
ingest does not leak them.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid
from pydicom.valuerep import format_number_as_ds

from cinerecon.io.files import atomic_path
from cinerecon.io.nifti import frame_interval
from cinerecon.labels import LAX_VIEWS

SAX_FIELD, LAX_FIELD = 20209, 20208
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
LPS = np.diag([-1.0, -1.0, 1.0])   # RAS <-> LPS (its own inverse)
LAX_DESCRIPTION = {"2ch": "CINE_segmented_LAX_2Ch", "3ch": "CINE_segmented_LAX_3Ch",
                   "4ch": "CINE_segmented_LAX_4Ch"}
MANIFEST_HEADER = "filename,patientid,studyid,aet,date,series discription"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_FAMILY = ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Evans", "Thomas")
_GIVEN = ("Margaret", "David", "Susan", "Peter", "Janet", "Robert", "Helen", "Michael")


@dataclass(frozen=True)
class DicomQuirks:
    """Real-world quirks of UK Biobank cine deliveries, off by default.

    sax_layout: 'separate' (one series per slice, `CINE_segmented_SAX_b1..bN`) or 'mixed'
        (one `CINE_segmented_SAX` series holding every slice).
    lax_layout: 'separate' (`CINE_segmented_LAX_2Ch/_3Ch/_4Ch`) or 'mixed' (one
        `CINE_segmented_LAX` series holding the three views, in the order 3ch, 4ch, 2ch).
    duplicate_slice: index of a SAX slice acquired twice. The first acquisition holds
        corrupted pixels (shifted by 3 pixels and brightened, like a failed breath-hold);
        the repeat, acquired at the end of the exam, holds the true pixels. 'separate':
        the repeat is a new series with the same description and the next free series
        number; 'mixed': extra images in the same series with AcquisitionNumber 2.
    compress: RLE Lossless (encapsulated) pixel data instead of native.
    shuffle: random member names (UID-like) and zip order, permuted series numbers,
        instance numbers and SAX `_b` numbers, so nothing but the headers' geometry and
        times can order the data.
    manifest_name: 'manifest.csv' or the misspelled 'manifest.cvs'; None writes no manifest.
    edit: optional callable (ds, info) -> Dataset | None applied to every image before it
        is compressed and written (None drops the file); info has keys view, slice, frame,
        repeat (True for the repeat of a duplicated slice) and member.
    """

    sax_layout: str = "separate"
    lax_layout: str = "separate"
    duplicate_slice: int | None = None
    compress: bool = False
    shuffle: bool = False
    manifest_name: str | None = "manifest.csv"
    edit: Callable | None = None

    def __post_init__(self):
        for key in ("sax_layout", "lax_layout"):
            if getattr(self, key) not in ("separate", "mixed"):
                raise ValueError(f"{key} must be 'separate' or 'mixed', got {getattr(self, key)!r}")

    @classmethod
    def from_dict(cls, d: dict | None) -> "DicomQuirks":
        d = dict(d or {})
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown DICOM quirks: {sorted(unknown)}")
        return cls(**d)


def zip_names(eid: str) -> dict:
    """File names UK Biobank uses for a subject's SAX and LAX cine zips (instance 2, array 0)."""
    return {"sax": f"{eid}_{SAX_FIELD}_2_0.zip", "lax": f"{eid}_{LAX_FIELD}_2_0.zip"}


def _ds(value: float) -> str:
    return format_number_as_ds(float(value))


def _time(seconds: float) -> str:
    """DICOM TM (HHMMSS.FFFFFF) of seconds after midnight."""
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h):02d}{int(m):02d}{s:09.6f}"


def _fake_patient(rng) -> dict:
    """Plausible, entirely invented identifiers (so tests can check they never leak)."""
    year, month, day = int(rng.integers(1940, 1970)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    return {
        "PatientName": f"{_FAMILY[rng.integers(len(_FAMILY))]}^{_GIVEN[rng.integers(len(_GIVEN))]}",
        "PatientID": f"PID{int(rng.integers(10**7, 10**8))}",
        "PatientBirthDate": f"{year:04d}{month:02d}{day:02d}",
        "PatientSex": str(rng.choice(["F", "M"])),
        "AccessionNumber": f"ACC{int(rng.integers(10**6, 10**7))}",
        "OtherPatientIDs": f"NHS{int(rng.integers(10**9, 10**10))}",
    }


@dataclass
class _Cine:
    """One slice's cine to write (a plane in one series)."""

    view: str
    slice: int
    images: np.ndarray      # (X, Y, T) int16
    affine: np.ndarray      # NIfTI affine of the view
    thickness_mm: float
    spacing_mm: float | None
    description: str
    series: str             # key of the series it belongs to
    acq_number: int = 1
    repeat: bool = False
    time_s: float = 0.0     # acquisition time (seconds after midnight)


def _read_cines(folder: Path):
    views = {}
    for view in ("sa",) + tuple(f"la_{v}" for v in LAX_VIEWS):
        img = nib.load(folder / f"{view}.nii.gz")
        data = np.asanyarray(img.dataobj)
        if data.dtype != np.int16:
            if not np.issubdtype(data.dtype, np.integer) or data.min() < -32768 or data.max() > 32767:
                raise ValueError(f"{folder / f'{view}.nii.gz'}: pixels must be int16-representable")
            data = data.astype(np.int16)
        views[view] = (data, img.affine.copy(), frame_interval(img.header))
    return views


def _acquisition_info(folder: Path, views) -> tuple[float, float, float, float]:
    """(SAX thickness, LAX thickness, heart rate bpm, frame interval s) of the subject."""
    params_path = folder / "truth" / "params.json"
    params = json.loads(params_path.read_text()) if params_path.exists() else {}
    acq = params.get("acquisition", {})
    data, affine, dt = views["sa"]
    dt = dt or 0.02
    sax_thickness = float(acq.get("sax_thickness_mm", 0.8 * np.linalg.norm(affine[:3, 2])))
    lax_thickness = float(acq.get("lax_thickness_mm",
                                  np.linalg.norm(views["la_4ch"][1][:3, 2])))
    heart_rate = float(params.get("heart_rate_bpm", 60.0 / (dt * data.shape[3])))
    return sax_thickness, lax_thickness, heart_rate, dt


def _plan(views, quirks: DicomQuirks, sax_thickness, lax_thickness, rng) -> list[_Cine]:
    """The cines to write, in acquisition order (LAX first, then SAX slices, then any repeat)."""
    cines = []
    for v in LAX_VIEWS:
        data, affine, _ = views[f"la_{v}"]
        if quirks.lax_layout == "separate":
            desc, series = LAX_DESCRIPTION[v], f"lax_{v}"
        else:
            desc, series = "CINE_segmented_LAX", "lax"
        cines.append(_Cine(f"la_{v}", 0, data[:, :, 0], affine, lax_thickness, None, desc, series))
    if quirks.lax_layout == "mixed":   # the mixed series holds 3ch, 4ch, 2ch (as often seen)
        order = {"la_3ch": 0, "la_4ch": 1, "la_2ch": 2}
        cines.sort(key=lambda c: order[c.view])
    data, affine, _ = views["sa"]
    n = data.shape[2]
    b_numbers = rng.permutation(n) + 1 if quirks.shuffle else np.arange(n) + 1
    spacing = float(np.linalg.norm(affine[:3, 2]))
    for k in range(n):
        if quirks.sax_layout == "separate":
            desc, series = f"CINE_segmented_SAX_b{b_numbers[k]}", f"sax_{k}"
        else:
            desc, series = "CINE_segmented_SAX", "sax"
        cines.append(_Cine("sa", k, data[:, :, k], affine, sax_thickness, spacing, desc, series))
    dup = quirks.duplicate_slice
    if dup is not None:
        if not 0 <= dup < n:
            raise ValueError(f"duplicate_slice {dup} outside the stack (0..{n - 1})")
        first = next(c for c in cines if c.view == "sa" and c.slice == dup)
        repeat = _Cine("sa", dup, first.images, affine, sax_thickness, spacing, first.description,
                       first.series + "_repeat" if quirks.sax_layout == "separate" else first.series,
                       acq_number=2 if quirks.sax_layout == "mixed" else 1, repeat=True)
        corrupted = np.roll(first.images.astype(np.int32), 3, axis=0) + 150
        first.images = np.clip(corrupted, -32768, 32767).astype(np.int16)
        cines.append(repeat)
    start = 9 * 3600 + 30 * 60 + float(rng.uniform(0, 3600))
    for i, cine in enumerate(cines):
        cine.time_s = start + 25.0 * i   # one breath-hold every 25 s
    return cines


def _image_dataset(cine: _Cine, frame: int, common: dict, series: dict, uid, instance: int,
                   n_frames: int, dt: float, heart_rate: float) -> Dataset:
    affine = cine.affine
    i_axis, j_axis = affine[:3, 0], affine[:3, 1]
    col_spacing, row_spacing = np.linalg.norm(i_axis), np.linalg.norm(j_axis)
    row_dir = LPS @ (i_axis / col_spacing)      # along a row: increasing column index = i
    col_dir = LPS @ (j_axis / row_spacing)      # down a column: increasing row index = j
    position = LPS @ (affine[:3, 3] + cine.slice * affine[:3, 2])
    normal = np.cross(row_dir, col_dir)
    sop_uid = uid("sop", cine.view, cine.series, cine.slice, cine.acq_number, cine.repeat, frame)

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"]
    ds.SOPClassUID = MR_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    for key, value in common.items():
        setattr(ds, key, value)
    ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = ds.StudyDate
    ds.SeriesTime = _time(series["time_s"])
    ds.AcquisitionTime = _time(cine.time_s)
    ds.ContentTime = _time(cine.time_s + 1.0)
    ds.SeriesInstanceUID = series["uid"]
    ds.SeriesNumber = series["number"]
    ds.SeriesDescription = cine.description
    ds.ProtocolName = cine.description
    ds.AcquisitionNumber = cine.acq_number
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [_ds(x) for x in position]
    ds.ImageOrientationPatient = [_ds(x) for x in np.concatenate([row_dir, col_dir])]
    ds.PixelSpacing = [_ds(row_spacing), _ds(col_spacing)]
    ds.SliceThickness = _ds(cine.thickness_mm)
    if cine.spacing_mm is not None:
        ds.SpacingBetweenSlices = _ds(cine.spacing_mm)
    ds.SliceLocation = _ds(float(position @ normal))
    ds.TriggerTime = _ds(frame * dt * 1000.0)
    ds.NominalInterval = str(int(round(60000.0 / heart_rate)))   # IS: whole ms, as scanners write
    ds.HeartRate = str(int(round(heart_rate)))
    ds.CardiacNumberOfImages = n_frames
    ds.Rows, ds.Columns = int(cine.images.shape[1]), int(cine.images.shape[0])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = np.ascontiguousarray(cine.images[:, :, frame].T).astype("<i2").tobytes()
    return ds


def write_ukbb_zips(nifti_folder, eid: str, out_dir, quirks: DicomQuirks | dict | None = None,
                    seed: int = 0) -> dict:
    """Write `sa.nii.gz` and `la_{2,3,4}ch.nii.gz` of nifti_folder as UK Biobank DICOM zips.

    Returns {"sax": path of `{eid}_20209_2_0.zip`, "lax": path of `{eid}_20208_2_0.zip`}.
    Slice thickness and heart rate come from `truth/params.json` when the folder was made
    by `cinerecon.synth` (else 0.8 x slice spacing, the LAX z spacing, and the heart rate
    implied by frame interval x frame count). Deterministic given (inputs, eid, quirks, seed).
    """
    folder, out_dir = Path(nifti_folder), Path(out_dir)
    if not isinstance(quirks, DicomQuirks):
        quirks = DicomQuirks.from_dict(quirks)
    rng = np.random.default_rng([seed, 20209])
    views = _read_cines(folder)
    sax_thickness, lax_thickness, heart_rate, dt = _acquisition_info(folder, views)
    n_frames = views["sa"][0].shape[3]
    cines = _plan(views, quirks, sax_thickness, lax_thickness, rng)

    def uid(*parts):
        return generate_uid(entropy_srcs=[str(eid), str(seed), *map(str, parts)])

    study_day = (int(rng.integers(2014, 2020)), int(rng.integers(1, 13)), int(rng.integers(1, 29)))
    common = {**_fake_patient(rng), "Modality": "MR", "Manufacturer": "SIEMENS",
              "ManufacturerModelName": "Aera", "MagneticFieldStrength": "1.5",
              "StudyDate": "{:04d}{:02d}{:02d}".format(*study_day),
              "StudyTime": _time(cines[0].time_s - 300.0), "StudyID": "1",
              "StudyInstanceUID": uid("study"), "FrameOfReferenceUID": uid("frame of reference"),
              "BodyPartExamined": "HEART", "ScanningSequence": "GR", "SequenceVariant": "SK\\SS",
              "PatientPosition": "HFS"}
    manifest_date = f"{_MONTHS[study_day[1] - 1]} {study_day[2]}, {study_day[0]}"

    # Series: numbers in acquisition order (permuted when shuffling), times of their first cine.
    series_keys = list(dict.fromkeys(c.series for c in cines))
    numbers = (rng.choice(np.arange(2, 99), size=len(series_keys), replace=False) if quirks.shuffle
               else np.arange(len(series_keys)) + 10)
    series = {key: {"uid": uid("series", key), "number": int(num),
                    "time_s": min(c.time_s for c in cines if c.series == key)}
              for key, num in zip(series_keys, numbers)}
    instances = {key: 0 for key in series_keys}

    members = {"sax": [], "lax": []}
    for cine in cines:
        for frame in range(n_frames):
            instances[cine.series] += 1
            ds = _image_dataset(cine, frame, common, series[cine.series], uid,
                                instances[cine.series], n_frames, dt, heart_rate)
            members["sax" if cine.view == "sa" else "lax"].append((cine, frame, ds))
    written = {}
    for kind, items in members.items():
        if quirks.shuffle:   # instance numbers and zip order carry no information
            order = rng.permutation(len(items))
            new_numbers = rng.permutation(len(items)) + 1
            items = [items[i] for i in order]
            for (cine, frame, ds), number in zip(items, new_numbers):
                ds.InstanceNumber = int(number)
        rows, blobs = [], []
        for cine, frame, ds in items:
            name = (f"{ds.SOPInstanceUID}.dcm" if quirks.shuffle
                    else f"{ds.SeriesNumber:03d}_{ds.InstanceNumber:04d}.dcm")
            if quirks.edit is not None:
                ds = quirks.edit(ds, {"view": cine.view, "slice": cine.slice, "frame": frame,
                                      "repeat": cine.repeat, "member": name})
                if ds is None:
                    continue
            if quirks.compress and "PixelData" in ds:
                ds.compress(RLELossless)
            buf = io.BytesIO()
            pydicom.dcmwrite(buf, ds, enforce_file_format=True)
            blobs.append((name, buf.getvalue()))
            rows.append(f"{name},{common['PatientID']},{common['StudyID']},UKBB_CMR,"
                        f"{manifest_date},{ds.get('SeriesDescription', '')}")
        path = out_dir / zip_names(eid)[kind]
        with atomic_path(path) as tmp:
            with zipfile.ZipFile(tmp, "w") as zf:
                stamp = (2020, 1, 1, 0, 0, 0)
                if quirks.manifest_name:
                    text = "\n".join([MANIFEST_HEADER, *rows]) + "\n"
                    zf.writestr(zipfile.ZipInfo(quirks.manifest_name, stamp), text,
                                compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
                for name, blob in blobs:
                    zf.writestr(zipfile.ZipInfo(name, stamp), blob,
                                compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
        written[kind] = path
    return written
