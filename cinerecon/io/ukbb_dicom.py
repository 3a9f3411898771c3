"""Ingest raw UK Biobank cine DICOM zips (fields 20209 SAX, 20208 LAX) into the NIfTI layout.

The DICOM headers are the truth; series numbers, file names, the order of files in a zip
and the manifest (advisory, parsed leniently) never decide geometry or order.

Conventions (DESIGN.md; the same as the UK Biobank conversions of Bai et al. 2018):
- Array axes (X, Y, Z, T): i runs along DICOM columns, j along rows, so
  ``data[i, j, k, t] = pixel_array[j, i]`` of slice k, frame t (X = Columns, Y = Rows).
- Affine (RAS, mm): column 0 = row direction cosine (ImageOrientationPatient[0:3]) x column
  spacing (PixelSpacing[1]); column 1 = column direction cosine (IOP[3:6]) x row spacing
  (PixelSpacing[0]); column 2 = n x z spacing with n = row x column direction (so the affine
  is right-handed); translation = ImagePositionPatient of slice 0. LPS -> RAS negates x, y.
- SAX slices are ordered by their position along n, ascending. The z spacing is the measured
  distance between slice positions (slices must be parallel, equally spaced, not offset
  in-plane); SpacingBetweenSlices is only compared. A LAX view (one slice) has z spacing =
  SliceThickness.
- Frames are ordered by TriggerTime; every slice must hold CardiacNumberOfImages frames.
- Pixels: native, RLE Lossless (pydicom) or JPEG-compressed (baseline, extended, lossless,
  JPEG-LS: pylibjpeg + pylibjpeg-libjpeg); a member whose transfer syntax no installed
  decoder reads is refused with the syntax's name and the missing plugin.

Series selection:
- SAX: descriptions `CINE_segmented_SAX_b<N>` (one series per slice) or one mixed
  `CINE_segmented_SAX`; LAX: `CINE_segmented_LAX_2Ch/_3Ch/_4Ch` or one mixed
  `CINE_segmented_LAX` (case-insensitive). Other series (e.g. `..._InlineVF`) are ignored
  and listed in meta.json. The manifest's description is used only when a file has none.
- A cine = the images of one series on one plane; images of one series and plane with
  repeated trigger times are split by AcquisitionNumber.
- A location acquired more than once (same SAX position, or the same LAX view): the
  complete acquisitions are preferred, then the latest by acquisition date/time (a repeat is
  made because the first was unusable), then the higher series number. meta.json warns.
- LAX views without a telling description are assigned by geometry (`assign_lax_views`).

Privacy: nothing from the patient module (name, birth date, IDs), no UIDs and no dates leave
ingest, in meta.json, log messages, warnings or errors; only the subject (eid), series
descriptions and numbers, zip names, technical values (geometry, timing, matrix) and, in
errors, the failing file named neutrally by its position in the zip and its series
description and instance number (zip member names are often SOP Instance UIDs, never shown).
pydicom reads without value validation and its warnings and log records are withheld while a
subject is ingested (they quote header values): meta.json counts them instead. Exception
texts quoted in errors have quoted values and UID-like numbers masked.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import re
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import get_decoder

from cinerecon.io.files import write_json
from cinerecon.io.nifti import InputError, save_nifti
from cinerecon.io.subject import (VIEWS, check_frames_consistent, frame_interval_problem, image_name,
                                  validate_image, validate_lax_geometry)
from cinerecon.labels import LAX_VIEWS

log = logging.getLogger(__name__)

LPS = np.diag([-1.0, -1.0, 1.0])         # LPS <-> RAS (its own inverse)
SAX_RE = re.compile(r"^cine_segmented_sax(?:_b(\d+)[a-z]*)?$", re.IGNORECASE)
LAX_RE = re.compile(r"^cine_segmented_lax(?:_([234])ch)?$", re.IGNORECASE)
MANIFEST_NAMES = ("manifest.csv", "manifest.cvs")

SAME_PLANE_MM = 0.01          # images of one cine share their position (to DICOM precision)
SAME_ORIENTATION = 1e-4       # ... and their direction cosines
SAME_LOCATION_MM = 1.0        # SAX cines closer than this along the normal are one location
PARALLEL_TOL_DEG = 0.1        # SAX slices must be parallel (0.1 deg ~ 0.2 mm at 100 mm)
SPACING_TOL_MM = 0.1          # gaps between SAX slices must be equal
INPLANE_TOL_MM = 0.1          # SAX slice positions must lie on one line along the normal
PIXEL_SPACING_TOL_MM = 1e-3
LAX_PAIR_MIN_DEG, LAX_PAIR_MARGIN_DEG, LAX_SI_MARGIN = 60.0, 10.0, 0.15
LAX_SAX_TILT_WARN_DEG = 20.0  # warn when a LAX plane is far from containing the SAX normal


def _file_label(index: int, description: str | None = None, instance: int | None = None,
                total: int | None = None) -> str:
    """A zip member named without its file name (often a SOP Instance UID): its position in
    the zip, with its series description and instance number once its header is read."""
    text = f"file #{index} of {total} in the zip" if total else f"file #{index} in the zip"
    if description is not None:
        text += f": '{description}'" if description else ": no series description"
        text += f" image {instance}" if instance is not None else ""
    return text


_QUOTED = re.compile(r"b?'[^']*'|b?\"[^\"]*\"")
_UID_LIKE = re.compile(r"\d+(?:\.\d+){3,}")


def _safe(exc: BaseException) -> str:
    """An exception as text with quoted values (file names, header values) and UID-like
    numbers masked: library messages may quote a member name or a header value."""
    text = _UID_LIKE.sub("<uid>", _QUOTED.sub("<value>", str(exc)))
    return f"{exc.__class__.__name__}: {text}"


class _PydicomWithheld(logging.Handler):
    """Counts pydicom's log records (WARNING and above) instead of passing them on; `caught`
    holds the Python warnings raised meanwhile."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.count = 0
        self.caught: list = []

    def emit(self, record):
        self.count += 1


@contextlib.contextmanager
def _withheld_pydicom():
    """Read DICOM without pydicom's value validation, and hold back pydicom's warnings and log
    records (they quote header values: names, dates, UIDs); yields a _PydicomWithheld whose
    `count` and `caught` say how many were withheld.

    Changes process-wide pydicom and logging state for the duration (ingest runs one subject
    at a time per process) and restores it afterwards.
    """
    settings = pydicom.config.settings
    mode = settings.reading_validation_mode
    logger = logging.getLogger("pydicom")
    handlers, propagate, level = logger.handlers[:], logger.propagate, logger.level
    handler = _PydicomWithheld()
    settings.reading_validation_mode = pydicom.config.IGNORE
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            handler.caught = caught
            yield handler
    finally:
        settings.reading_validation_mode = mode
        logger.handlers, logger.propagate = handlers, propagate
        logger.setLevel(level)


@dataclass
class _Image:
    zip: Path
    member: str                  # for ordering only: never shown (often a UID)
    index: int                   # 1-based position among the zip's files
    ds: pydicom.Dataset
    description: str
    series_uid: str
    series_number: int | None
    acq_number: int | None
    row_dir: np.ndarray          # RAS unit vector along a row (increasing column index)
    col_dir: np.ndarray          # RAS unit vector down a column (increasing row index)
    position: np.ndarray         # RAS position of the first pixel's centre
    trigger_ms: float
    n_cardiac: int | None
    rows: int
    cols: int
    pixel_spacing: tuple         # (row spacing, column spacing), as in DICOM
    thickness: float | None
    between: float | None
    time_key: tuple              # acquisition date/time, for choosing between repeats
    instance: int | None = None  # InstanceNumber

    @property
    def where(self) -> str:
        return f"{self.zip} ({_file_label(self.index, self.description, self.instance)})"

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.row_dir, self.col_dir)
        return n / np.linalg.norm(n)


@dataclass
class _Cine:
    images: list                 # sorted by trigger time
    view: str | None = None      # 'sa' or la_{2,3,4}ch once known
    identified_by: str = ""

    @property
    def first(self) -> _Image:
        return self.images[0]

    @property
    def n_expected(self) -> int | None:
        return self.first.n_cardiac

    @property
    def complete(self) -> bool:
        return self.n_expected is None or len(self.images) == self.n_expected

    @property
    def time_key(self) -> tuple:
        return min(im.time_key for im in self.images)

    @property
    def label(self) -> str:
        num = self.first.series_number
        acq = f", acquisition {self.first.acq_number}" if self.first.acq_number is not None else ""
        return f"'{self.first.description}' series #{num if num is not None else '?'}{acq}"

    def sort_key(self) -> tuple:
        """Preference between repeats: complete, then latest acquisition, then series number."""
        f = self.first
        return (self.complete, self.time_key, f.series_number if f.series_number is not None else -1,
                f.acq_number if f.acq_number is not None else -1, f.series_uid)


@dataclass
class _Report:
    warnings: list = field(default_factory=list)
    ignored: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)

    def warn(self, subject: str, message: str):
        self.warnings.append(message)
        log.warning("subject %s: %s", subject, message)


# ---- reading ------------------------------------------------------------------------------

def parse_manifest(text: str) -> dict:
    """{filename: series description} from a UK Biobank manifest (advisory).

    The description column is spelled `series discription` (any spelling containing
    'series' and 'descr'/'discr' is accepted) and dates hold unquoted commas ("Mar 15, 2016"),
    so rows can have more fields than the header: columns left of the first date column are
    read from the left, the others from the right.
    """
    rows = [r for r in csv.reader(io.StringIO(text)) if any(x.strip() for x in r)]
    if not rows:
        return {}
    header = [h.strip().lower() for h in rows[0]]
    try:
        name_col = next(i for i, h in enumerate(header) if h in ("filename", "file name", "file"))
        desc_col = next(i for i, h in enumerate(header)
                        if "series" in h and re.search(r"d[ie]s?cr", h))
    except StopIteration:
        raise ValueError(f"manifest header {header} has no filename / series description column")
    date_cols = [i for i, h in enumerate(header) if "date" in h]
    split = date_cols[0] if date_cols else len(header)
    out = {}
    for row in rows[1:]:
        extra = len(row) - len(header)
        if extra < 0:
            continue

        def get(i):
            return row[i] if i < split else row[i + extra]

        out[get(name_col).strip()] = get(desc_col).strip()
    return out


def _float(value, default=None):
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _int(value, default=None):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _seconds(tm) -> float:
    """DICOM TM (HHMMSS.FFFFFF, possibly shorter) as seconds after midnight."""
    s = str(tm or "").strip()
    m = re.match(r"^(\d{2})(\d{2})?(\d{2})?(\.\d+)?$", s)
    if not m:
        return float("nan")
    h, mi, sec, frac = m.groups()
    return int(h) * 3600 + int(mi or 0) * 60 + int(sec or 0) + float(frac or 0)


def _time_key(ds) -> tuple:
    date = str(ds.get("AcquisitionDate") or ds.get("SeriesDate") or ds.get("StudyDate") or "")
    t = _seconds(ds.get("AcquisitionTime") or ds.get("SeriesTime") or ds.get("ContentTime"))
    return (date, -1.0 if np.isnan(t) else t)


def _image(subject, zip_path: Path, member: str, index: int, ds, description: str) -> _Image:
    instance = _int(ds.get("InstanceNumber"))
    where = f"{zip_path} ({_file_label(index, description, instance)})"

    def need(keyword, convert):
        """A required tag converted by `convert`; errors name the tag, never its value."""
        value = ds.get(keyword)
        if value is None or value == "":
            raise InputError(subject, where, f"DICOM has no {keyword}")
        try:
            return convert(value)
        except (TypeError, ValueError):
            raise InputError(subject, where, f"unreadable {keyword} (not a number or list of "
                                             "numbers)") from None

    def numbers(value):
        return [float(x) for x in (value if isinstance(value, (list, tuple, MultiValue)) else [value])]

    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise InputError(subject, where, "DICOM has no pixel data")
    iop = np.array(need("ImageOrientationPatient", numbers))
    ipp = np.array(need("ImagePositionPatient", numbers))
    spacing = tuple(need("PixelSpacing", numbers))
    trigger = need("TriggerTime", float)
    rows, cols = need("Rows", int), need("Columns", int)
    if iop.shape != (6,) or ipp.shape != (3,) or len(spacing) != 2 or not min(spacing) > 0:
        raise InputError(subject, where, "malformed ImageOrientationPatient, "
                                         "ImagePositionPatient or PixelSpacing")
    row_dir, col_dir = LPS @ iop[:3], LPS @ iop[3:]
    norms = np.linalg.norm(row_dir), np.linalg.norm(col_dir)
    if min(norms) < 1e-6 or abs(row_dir @ col_dir) / (norms[0] * norms[1]) > 1e-3:
        raise InputError(subject, where, "ImageOrientationPatient is degenerate or not orthogonal")
    if _int(ds.get("NumberOfFrames"), 1) > 1:
        raise InputError(subject, where, "multi-frame DICOM is not supported (UK Biobank cines "
                                         "store one frame per file)")
    return _Image(
        zip=zip_path, member=member, index=index, instance=instance, ds=ds, description=description,
        series_uid=str(ds.get("SeriesInstanceUID", "")), series_number=_int(ds.get("SeriesNumber")),
        acq_number=_int(ds.get("AcquisitionNumber")),
        row_dir=row_dir / norms[0], col_dir=col_dir / norms[1], position=LPS @ ipp,
        trigger_ms=trigger, n_cardiac=_int(ds.get("CardiacNumberOfImages")), rows=rows, cols=cols,
        pixel_spacing=spacing, thickness=_float(ds.get("SliceThickness")),
        between=_float(ds.get("SpacingBetweenSlices")), time_key=_time_key(ds))


def _read_zip(subject: str, zip_path: Path, report: _Report, patients: set) -> list:
    """Every cine image (SAX or LAX) of one zip; other files are ignored and counted."""
    if not zip_path.exists():
        raise InputError(subject, zip_path, "file is missing")
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise InputError(subject, zip_path, f"not a readable zip archive (truncated or corrupt?): "
                                            f"{_safe(exc)}") from None
    datasets, manifest = [], None
    with zf:
        members = [info for info in zf.infolist() if not info.is_dir()]
        for index, info in enumerate(members, 1):
            name = info.filename
            where = f"{zip_path} ({_file_label(index, total=len(members))})"
            try:
                blob = zf.read(info)
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError,
                    NotImplementedError, RuntimeError) as exc:
                raise InputError(subject, where, f"cannot extract from the zip (truncated or "
                                                 f"corrupt?): {_safe(exc)}") from None
            if Path(name).name.lower() in MANIFEST_NAMES:
                manifest = (name, blob)
                continue
            try:
                ds = pydicom.dcmread(io.BytesIO(blob))
            except InvalidDicomError:
                if name.lower().endswith((".dcm", ".ima")) or Path(name).suffix == "":
                    raise InputError(subject, where, "not a DICOM file") from None
                report.ignored[f"non-DICOM file {Path(name).suffix}"] = \
                    report.ignored.get(f"non-DICOM file {Path(name).suffix}", 0) + 1
                continue
            except Exception as exc:  # pydicom raises many types for damaged files
                raise InputError(subject, where, f"cannot parse DICOM ({_safe(exc)})") from None
            datasets.append((name, index, ds))

    listed = {}
    if manifest is not None:
        try:
            listed = parse_manifest(manifest[1].decode("utf-8", errors="replace"))
        except ValueError:   # its message quotes the first row, which may be patient data
            report.warn(subject, f"{zip_path.name}: manifest ignored (its first row names no "
                                 "filename and series description columns)")
        names = {n for n, _, _ in datasets}
        report.manifest[zip_path.name] = {
            "file": Path(manifest[0]).name, "rows": len(listed),
            "listed_but_missing": len(set(listed) - names),
            "present_but_unlisted": len(names - set(listed)),
        }
        if set(listed) - names:
            report.warn(subject, f"{zip_path.name}: manifest lists {len(set(listed) - names)} "
                                 "file(s) missing from the zip")
    mismatches = 0
    images = []
    for name, index, ds in datasets:
        description = str(ds.get("SeriesDescription", "") or "").strip()
        if not description:
            description = listed.get(name, "")
        elif name in listed and listed[name] != description:
            mismatches += 1
        if not (SAX_RE.match(description) or LAX_RE.match(description)):
            key = description or "(no description)"
            report.ignored[key] = report.ignored.get(key, 0) + 1
            continue
        patients.add(hash(str(ds.get("PatientID", ""))))   # compared, never stored
        images.append(_image(subject, zip_path, name, index, ds, description))
    if mismatches:
        report.warn(subject, f"{zip_path.name}: {mismatches} file(s) whose manifest description "
                             "differs from the DICOM header (the header was used)")
    return images


# ---- grouping -----------------------------------------------------------------------------

def _same_plane(a: _Image, b: _Image) -> bool:
    return (np.abs(a.row_dir - b.row_dir).max() < SAME_ORIENTATION
            and np.abs(a.col_dir - b.col_dir).max() < SAME_ORIENTATION
            and np.linalg.norm(a.position - b.position) < SAME_PLANE_MM)


def _cines(subject: str, images: list) -> list:
    """Group images into cines: one series, one plane, unique trigger times."""
    groups = []
    by_series = {}
    for im in sorted(images, key=lambda im: (im.zip.name, im.member)):
        clusters = by_series.setdefault((im.zip.name, im.series_uid, im.description), [])
        for cluster in clusters:
            if _same_plane(cluster[0], im):
                cluster.append(im)
                break
        else:
            clusters.append([im])
            groups.append(clusters[-1])
    cines = []
    for group in groups:
        triggers = [im.trigger_ms for im in group]
        parts = [group]
        if len(set(triggers)) < len(triggers):
            by_acq = {}
            for im in group:
                by_acq.setdefault(im.acq_number, []).append(im)
            parts = list(by_acq.values())
            if any(len({im.trigger_ms for im in p}) < len(p) for p in parts):
                dup = next(im for p in parts for im in p
                           if sum(o.trigger_ms == im.trigger_ms for o in p) > 1)
                raise InputError(subject, dup.where, f"several images of series "
                                 f"'{dup.description}' at one position share TriggerTime "
                                 f"{dup.trigger_ms} ms and cannot be told apart")
        for part in parts:
            part = sorted(part, key=lambda im: (im.trigger_ms, _int(im.ds.get("InstanceNumber"), 0)))
            counts = {im.n_cardiac for im in part}
            if len(counts) > 1:
                raise InputError(subject, part[0].where, "CardiacNumberOfImages differs within "
                                 f"one cine of '{part[0].description}': {sorted(map(str, counts))}")
            cine = _Cine(part)
            if cine.n_expected is not None and len(part) > cine.n_expected:
                raise InputError(subject, part[0].where, f"'{part[0].description}' has "
                                 f"{len(part)} frames at one position but CardiacNumberOfImages "
                                 f"is {cine.n_expected}")
            cines.append(cine)
    return cines


def _pick(subject: str, cines: list, what: str, report: _Report) -> _Cine:
    """One cine among repeats of the same location (see the module docstring for the rule)."""
    chosen = max(cines, key=_Cine.sort_key)
    if len(cines) > 1:
        labels = [c.label + ("" if c.complete else " (incomplete)")
                  for c in sorted(cines, key=_Cine.sort_key)]
        why = ("the latest complete acquisition by acquisition date/time (a repeat is made "
               "because the first was unusable)" if chosen.complete else "none is complete")
        report.warn(subject, f"{what} was acquired {len(cines)} times ({'; '.join(labels)}); "
                             f"kept {chosen.label}: {why}")
    return chosen


def _require_complete(subject: str, cine: _Cine, what: str):
    if not cine.complete:
        raise InputError(subject, cine.first.where,
                         f"{what} ({cine.label}) has {len(cine.images)} of {cine.n_expected} "
                         "frames (CardiacNumberOfImages): frames are missing; refusing to "
                         "invent them")


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(abs(a @ b), 0.0, 1.0))))


# ---- SAX ----------------------------------------------------------------------------------

def _sax_stack(subject: str, cines: list, report: _Report):
    """Ordered SAX cines (one per location) and the stack's z spacing."""
    normals = np.array([c.first.normal for c in cines])
    ref = normals[0]
    normals *= np.sign(normals @ ref)[:, None]
    mean_normal = normals.mean(0) / np.linalg.norm(normals.mean(0))
    heights = np.array([c.first.position @ mean_normal for c in cines])
    order = np.argsort(heights, kind="stable")
    locations, current = [], [order[0]]
    for a, b in zip(order[:-1], order[1:]):
        if heights[b] - heights[a] < SAME_LOCATION_MM:
            current.append(b)
        else:
            locations.append(current)
            current = [b]
    locations.append(current)
    chosen = [_pick(subject, [cines[i] for i in loc], f"SAX slice at {heights[loc[0]]:.1f} mm "
                    "along the stack normal", report) for loc in locations]
    for cine in chosen:
        _require_complete(subject, cine, "SAX slice")

    # All slices parallel, with the same in-plane axes, as one affine requires.
    ref = chosen[0].first
    for cine in chosen[1:]:
        im = cine.first
        angle = max(_angle_deg(im.normal, ref.normal), np.degrees(np.arccos(np.clip(
            im.row_dir @ ref.row_dir, -1, 1))))
        if angle > PARALLEL_TOL_DEG:
            raise InputError(subject, im.where, f"SAX slices are not parallel: {cine.label} is "
                             f"rotated by {angle:.2f} deg from {chosen[0].label} "
                             f"(tolerance {PARALLEL_TOL_DEG} deg); refusing to build one affine")
    normal = ref.normal
    # Order along the right-handed normal n = row x column direction.
    chosen.sort(key=lambda c: c.first.position @ normal)
    if len(chosen) < 2:
        return chosen, None
    heights = np.array([c.first.position @ normal for c in chosen])
    gaps = np.diff(heights)
    spacing = float((heights[-1] - heights[0]) / (len(chosen) - 1))
    if np.abs(gaps - spacing).max() > SPACING_TOL_MM:
        raise InputError(subject, chosen[0].first.zip,
                         f"SAX slices are unequally spaced along the stack normal (gaps "
                         f"{np.round(gaps, 2).tolist()} mm; a slice may be missing or misplaced); "
                         "refusing to build one affine")
    origin = ref.position
    for k, cine in enumerate(chosen):
        offset = cine.first.position - (origin + k * spacing * normal)
        if np.linalg.norm(offset) > INPLANE_TOL_MM:
            raise InputError(subject, cine.first.where,
                             f"SAX slice {k} ({cine.label}) is offset by "
                             f"{np.linalg.norm(offset):.2f} mm in-plane from the line through "
                             "slice 0 along the normal (sheared stack); refusing to build one "
                             "affine")
    between = {c.first.between for c in chosen if c.first.between is not None}
    if between and max(abs(b - spacing) for b in between) > SPACING_TOL_MM:
        report.warn(subject, f"SpacingBetweenSlices {sorted(between)} differs from the measured "
                             f"slice spacing {spacing:.3f} mm (the measured spacing was used)")
    return chosen, spacing


# ---- LAX ----------------------------------------------------------------------------------

def assign_lax_views(normals: list) -> list:
    """Views ('2ch', '3ch', '4ch') of three long-axis planes from their unit normals (RAS).

    Rule: the 2ch and 4ch planes both contain the LV long axis and are planned orthogonal
    to each other; the 3ch (LV outflow) plane lies between them. So the pair of planes
    closest to perpendicular is {2ch, 4ch} and the third plane is the 3ch. Of that pair the
    4ch ("horizontal long axis") is the more transverse plane: its normal has the larger
    superior-inferior component; the 2ch ("vertical long axis") is the more upright one.
    Raises ValueError when the geometry does not say clearly (pair angle < 60 deg, a margin
    under 10 deg to the next pair, or superior-inferior components within 0.15).
    """
    n = [np.asarray(x, float) / np.linalg.norm(x) for x in normals]
    if len(n) != 3:
        raise ValueError(f"need three LAX planes, got {len(n)}")
    pairs = sorted(((_angle_deg(n[a], n[b]), (a, b)) for a, b in ((0, 1), (0, 2), (1, 2))),
                   reverse=True)
    (best, (a, b)), (second, _) = pairs[0], pairs[1]
    if best < LAX_PAIR_MIN_DEG or best - second < LAX_PAIR_MARGIN_DEG:
        raise ValueError(f"no clearly orthogonal pair of LAX planes (angles between planes "
                         f"{[round(p[0], 1) for p in pairs]} deg)")
    if abs(abs(n[a][2]) - abs(n[b][2])) < LAX_SI_MARGIN:
        raise ValueError(f"the orthogonal LAX pair is equally transverse (|normal S-I| "
                         f"{abs(n[a][2]):.2f} vs {abs(n[b][2]):.2f})")
    four, two = (a, b) if abs(n[a][2]) > abs(n[b][2]) else (b, a)
    views = ["3ch"] * 3
    views[four], views[two] = "4ch", "2ch"
    return views


def _lax_views(subject: str, cines: list, report: _Report) -> dict:
    """{view: cine} for la_2ch, la_3ch, la_4ch."""
    labelled, unlabelled = {}, []
    for cine in cines:
        m = LAX_RE.match(cine.first.description)
        if m.group(1):
            labelled.setdefault(f"la_{m.group(1)}ch", []).append(cine)
        else:
            unlabelled.append(cine)
    chosen = {}
    for view, group in labelled.items():
        chosen[view] = _pick(subject, group, f"LAX view {view}", report)
        chosen[view].identified_by = "description"
    if unlabelled:
        planes = []
        for cine in unlabelled:
            for plane in planes:
                if (_angle_deg(plane[0].first.normal, cine.first.normal) < 1.0 and
                        abs((cine.first.position - plane[0].first.position) @ plane[0].first.normal)
                        < SAME_LOCATION_MM):
                    plane.append(cine)
                    break
            else:
                planes.append([cine])
        planes.sort(key=lambda p: tuple(np.round(p[0].first.normal, 6)))
        kept = [_pick(subject, p, f"LAX plane of '{p[0].first.description}' (normal "
                                  f"{np.round(p[0].first.normal, 2).tolist()})", report)
                for p in planes]
        missing = [f"la_{v}" for v in LAX_VIEWS if f"la_{v}" not in chosen]
        where = kept[0].first.zip
        if len(kept) > len(missing):
            raise InputError(subject, where, f"{len(kept)} LAX planes without a view in their "
                             f"description but only {len(missing)} view(s) missing "
                             f"({missing}); cannot tell them apart")
        if len(kept) == 1 and len(missing) == 1:
            chosen[missing[0]] = kept[0]
            kept[0].identified_by = "the only view left"
        elif len(kept) + len(chosen) == 3:
            known = [chosen[v] for v in chosen]
            everything = known + kept
            try:
                views = assign_lax_views([c.first.normal for c in everything])
            except ValueError as exc:
                raise InputError(subject, where, f"cannot tell the LAX views apart by geometry: "
                                                 f"{exc}") from exc
            for cine, view in zip(known, views):
                if chosen.get(f"la_{view}") is not cine:
                    raise InputError(subject, where, f"LAX geometry calls {cine.label} a {view} "
                                                     "view, contradicting its description")
            for cine, view in zip(kept, views[len(known):]):
                chosen[f"la_{view}"] = cine
                cine.identified_by = "geometry"
            report.warn(subject, "LAX views assigned by geometry (the orthogonal pair is "
                                 "2ch/4ch, 4ch the more transverse; the third is 3ch): " +
                        ", ".join(f"{c.label} plane with normal "
                                  f"{np.round(c.first.normal, 2).tolist()} -> {v}"
                                  for c, v in zip(kept, views[len(known):])))
        else:
            raise InputError(subject, where, f"{len(kept)} unlabelled LAX plane(s) cannot fill "
                                             f"the missing view(s) {missing}")
    for view in (f"la_{v}" for v in LAX_VIEWS):
        if view not in chosen:
            raise InputError(subject, cines[0].first.zip, f"no {view[3:]} LAX series found")
        chosen[view].view = view
        _require_complete(subject, chosen[view], f"LAX view {view}")
    return chosen


# ---- pixels, affines, timing --------------------------------------------------------------

def _transfer_syntax(ds):
    """The dataset's transfer syntax UID when it is a standard one, else None."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return syntax if isinstance(syntax, pydicom.uid.UID) and syntax.is_transfer_syntax else None


def _decoder_problem(ds) -> str | None:
    """Why no installed decoder can read the pixel data of ds (compressed with a transfer
    syntax that pydicom cannot decode, or whose decoder plugins are all missing), else None.

    The JPEG family (baseline, extended, lossless, JPEG-LS) is decoded by pylibjpeg with
    pylibjpeg-libjpeg (core dependencies; pydicom also uses Pillow or python-gdcm where
    installed), RLE Lossless by pydicom itself."""
    syntax = _transfer_syntax(ds)
    if syntax is None or not syntax.is_compressed:
        return None
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        return f"pixel data compressed as {syntax.name}, which no pydicom decoder supports"
    if decoder.is_available:
        return None
    missing = "; ".join(decoder.missing_dependencies) or "none registered"
    return (f"pixel data compressed as {syntax.name}, and no installed decoder can read it "
            f"(plugins missing: {missing}); install cinerecon's dependencies (pylibjpeg, "
            "pylibjpeg-libjpeg) or python-gdcm")


def _pixels(subject: str, im: _Image) -> np.ndarray:
    problem = _decoder_problem(im.ds)
    if problem:
        raise InputError(subject, im.where, f"cannot decode: {problem}")
    try:
        arr = im.ds.pixel_array
    except Exception as exc:  # damaged fragments, a nonconforming stream, ...
        syntax = _transfer_syntax(im.ds)
        name = syntax.name if syntax is not None else "not a standard one"
        raise InputError(subject, im.where, f"cannot decode pixel data (transfer syntax {name}): "
                                            f"{_safe(exc)}") from None
    if arr.shape != (im.rows, im.cols):
        raise InputError(subject, im.where, f"pixel array shape {arr.shape} != "
                                            f"Rows x Columns {(im.rows, im.cols)}")
    slope = _float(im.ds.get("RescaleSlope"), 1.0)
    intercept = _float(im.ds.get("RescaleIntercept"), 0.0)
    if slope != 1.0 or intercept != 0.0:
        return arr.astype(np.float32) * slope + intercept
    return arr


def _volume(subject: str, cines: list, what: str, report: _Report) -> np.ndarray:
    """(X, Y, Z, T) array: data[i, j, k, t] = pixel_array[j, i] of slice k, frame t."""
    ref = cines[0].first
    for cine in cines:
        im = cine.first
        if (im.rows, im.cols) != (ref.rows, ref.cols):
            raise InputError(subject, im.where, f"{what}: matrix {im.rows}x{im.cols} differs from "
                                                f"{ref.rows}x{ref.cols} of {cines[0].label}")
        if np.abs(np.subtract(im.pixel_spacing, ref.pixel_spacing)).max() > PIXEL_SPACING_TOL_MM:
            raise InputError(subject, im.where, f"{what}: PixelSpacing {im.pixel_spacing} differs "
                                                f"from {ref.pixel_spacing} of {cines[0].label}")
        if len(cine.images) != len(cines[0].images):
            raise InputError(subject, im.where, f"{what}: {len(cine.images)} frames but "
                                                f"{len(cines[0].images)} in {cines[0].label}")
    frames = [[_pixels(subject, im) for im in cine.images] for cine in cines]
    dtypes = {a.dtype for f in frames for a in f}
    dtype = np.result_type(*dtypes)
    if np.issubdtype(dtype, np.floating):
        report.warn(subject, f"{what}: RescaleSlope/Intercept applied; stored as float32")
        dtype = np.float32
    out = np.empty((ref.cols, ref.rows, len(cines), len(cines[0].images)), dtype=dtype)
    for k, slice_frames in enumerate(frames):
        for t, arr in enumerate(slice_frames):
            out[:, :, k, t] = arr.T
    if np.issubdtype(out.dtype, np.integer) and out.dtype != np.int16 and out.size:
        if out.min() >= -32768 and out.max() <= 32767:   # the NIfTI convention is int16
            out = out.astype(np.int16)
    return out


def _affine(first: _Image, z_axis: np.ndarray) -> np.ndarray:
    row_spacing, col_spacing = first.pixel_spacing
    affine = np.eye(4)
    affine[:3, 0] = first.row_dir * col_spacing
    affine[:3, 1] = first.col_dir * row_spacing
    affine[:3, 2] = z_axis
    affine[:3, 3] = first.position
    return affine


def _timing(cines: list) -> dict:
    triggers = np.array([[im.trigger_ms for im in c.images] for c in cines])   # (Z, T)
    n = triggers.shape[1]
    per_slice = (triggers[:, -1] - triggers[:, 0]) / max(n - 1, 1)
    return {
        "frame_interval_s": float(np.median(per_slice)) / 1000.0 if n > 1 else None,
        "trigger_times_ms": np.round(triggers.mean(0), 3).tolist(),
        "trigger_time_spread_ms": float(np.round((triggers.max(0) - triggers.min(0)).max(), 3)),
    }


def _heart_rate(images: list, report: _Report, subject: str) -> dict:
    nominal = [v for v in (_float(im.ds.get("NominalInterval")) for im in images) if v and v > 0]
    rates = [v for v in (_float(im.ds.get("HeartRate")) for im in images) if v and v > 0]
    if nominal:   # R-R interval in whole ms (IS)
        rr = float(np.median(nominal))
        return {"heart_rate_bpm": round(60000.0 / rr, 3), "rr_interval_ms": round(rr, 3),
                "heart_rate_source": "NominalInterval"}
    if rates:
        hr = float(np.median(rates))
        return {"heart_rate_bpm": round(hr, 3), "rr_interval_ms": round(60000.0 / hr, 3),
                "heart_rate_source": "HeartRate"}
    report.warn(subject, "no NominalInterval or HeartRate tag: heart rate unknown")
    return {"heart_rate_bpm": None, "rr_interval_ms": None, "heart_rate_source": None}


def _series_rows(cines: list, heights=None) -> list:
    rows = []
    for k, c in enumerate(cines):
        row = {"slice": k, "description": c.first.description,
               "series_number": c.first.series_number, "acquisition_number": c.first.acq_number,
               "zip": c.first.zip.name, "n_images": len(c.images)}
        if heights is not None:
            row["position_mm"] = round(float(heights[k]), 4)
        rows.append(row)
    return rows


# ---- entry point --------------------------------------------------------------------------

def ingest_ukbb_zips(subject: str, zip_paths, outputs, meta_path) -> dict:
    """Convert one subject's UK Biobank cine zips into sa.nii.gz and la_{2,3,4}ch.nii.gz.

    zip_paths: the subject's zips (`{eid}_20209_2_0.zip` SAX, `{eid}_20208_2_0.zip` LAX;
    which zip holds which series is read from the DICOM headers, not the names).
    outputs: {view: path} for the views `sa`, `la_2ch`, `la_3ch`, `la_4ch`, or a folder
    (files named `{view}.nii.gz`). meta_path: where meta.json goes.
    Every view is built and validated before anything is written: a bad subject raises
    InputError (naming subject, zip and the failing file by position and series, and the
    reason) and writes nothing. Validation: each view (cinerecon.io.subject.validate_image),
    equal frame counts, every LAX plane meets the SAX stack (validate_lax_geometry).
    Returns the meta.json content.
    """
    zips = list(dict.fromkeys(Path(p) for p in ([zip_paths] if isinstance(zip_paths, (str, Path))
                                                else zip_paths)))
    if isinstance(outputs, (str, Path)):
        outputs = {view: Path(outputs) / image_name(view) for view in VIEWS}
    missing_outputs = [v for v in VIEWS if v not in outputs]
    if missing_outputs:
        raise ValueError(f"outputs lack the views {missing_outputs}")
    if not zips:
        raise InputError(subject, "(no zips)", "no DICOM zips given")
    report = _Report()
    for z in zips:
        if not z.name.startswith(f"{subject}_"):
            report.warn(subject, f"zip {z.name} is not named after the subject ({subject}_...)")
    with _withheld_pydicom() as withheld:
        views, meta_views, heart = _convert(subject, zips, report)
    n_withheld = withheld.count + len(withheld.caught)
    if n_withheld:
        report.warn(subject, f"{n_withheld} warning(s) from the DICOM reader (nonconforming header "
                             "values, ...) withheld: they may quote identifying values")

    meta = {"subject": subject, "source": {"zips": [z.name for z in zips],
                                           "manifest": report.manifest}, "views": {}}
    for view in VIEWS:
        data, affine, cines = views[view]
        timing = _timing(cines)
        problem = frame_interval_problem(timing["frame_interval_s"], data.shape[3])
        if problem:
            report.warn(subject, f"{view}: {problem} (TriggerTime); frame interval not recorded")
            timing["frame_interval_s"] = None
        meta["views"][view] = {
            "shape": list(data.shape), "dtype": str(data.dtype),
            "spacing_mm": np.linalg.norm(affine[:3, :3], axis=0).round(6).tolist(),
            **timing, **meta_views[view]}
    meta["frame_interval_s"] = meta["views"]["sa"]["frame_interval_s"]
    meta.update(heart)
    meta["ignored_series"] = dict(sorted(report.ignored.items()))
    meta["warnings"] = report.warnings
    meta["conventions"] = ("X = DICOM columns, Y = rows; affine RAS mm; SAX slices ordered along "
                           "row x column normal; frames ordered by TriggerTime")
    for view in VIEWS:
        data, affine, _ = views[view]
        save_nifti(outputs[view], data, affine, meta["views"][view]["frame_interval_s"])
    write_json(meta_path, meta)
    return meta


def _convert(subject: str, zips: list, report: _Report):
    """Read, group and validate every view: ({view: (data, affine, cines)}, {view: meta},
    heart-rate fields). Touches DICOM headers and pixels: run under _withheld_pydicom."""
    patients: set = set()
    images = [im for z in zips for im in _read_zip(subject, z, report, patients)]
    zip_list = ", ".join(str(z) for z in zips)
    if len(patients) > 1:
        raise InputError(subject, zip_list, "the DICOM files belong to more than one patient "
                                            "(PatientID differs); zips of different subjects mixed?")
    sax_images = [im for im in images if SAX_RE.match(im.description)]
    lax_images = [im for im in images if LAX_RE.match(im.description)]
    if not sax_images:
        raise InputError(subject, zip_list, "no SAX cine series (CINE_segmented_SAX...) found")
    if not lax_images:
        raise InputError(subject, zip_list, "no LAX cine series (CINE_segmented_LAX...) found")

    sax, spacing = _sax_stack(subject, _cines(subject, sax_images), report)
    if spacing is None:
        raise InputError(subject, sax[0].first.where, "SAX stack has 1 slice; need at least 2")
    lax = _lax_views(subject, _cines(subject, lax_images), report)

    views, meta_views = {}, {}
    normal = sax[0].first.normal
    data = _volume(subject, sax, "SAX", report)
    views["sa"] = (data, _affine(sax[0].first, normal * spacing), sax)
    meta_views["sa"] = {"series": _series_rows(sax, [c.first.position @ normal for c in sax]),
                        "slice_thickness_mm": sax[0].first.thickness,
                        "slice_spacing_mm": round(spacing, 6),
                        "identified_by": "description"}
    for view, cine in lax.items():
        im = cine.first
        tilt = 90.0 - _angle_deg(im.normal, normal)   # angle between the LAX plane and the SAX normal
        if tilt > LAX_SAX_TILT_WARN_DEG:
            report.warn(subject, f"{view} plane makes {tilt:.0f} deg with the SAX stack normal "
                                 "(a long-axis view should contain the LV long axis)")
        thickness = im.thickness or im.between
        if not thickness or thickness <= 0:
            raise InputError(subject, im.where, "LAX image has no SliceThickness")
        views[view] = (_volume(subject, [cine], view, report), _affine(im, im.normal * thickness),
                       [cine])
        meta_views[view] = {"series": _series_rows([cine]), "slice_thickness_mm": thickness,
                            "identified_by": cine.identified_by}

    # Validate everything before writing anything.
    for view, (data, affine, cines) in views.items():
        validate_image(subject, f"{cines[0].first.zip} ({view})", data, affine, view)
    check_frames_consistent(subject, zip_list, {v: d.shape[3] for v, (d, _, _) in views.items()})
    sax_data, sax_affine, _ = views["sa"]
    for view in VIEWS[1:]:
        data, affine, cines = views[view]
        validate_lax_geometry(subject, f"{cines[0].first.zip} ({view})", data.shape, affine,
                              sax_data.shape, sax_affine)
    used = [im for _, _, cines in views.values() for c in cines for im in c.images]
    return views, meta_views, _heart_rate(used, report, subject)
