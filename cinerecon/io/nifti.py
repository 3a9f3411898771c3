"""NIfTI reading/writing with the conventions of DESIGN.md (RAS mm affines, seconds)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from cinerecon.io.files import atomic_path


class InputError(ValueError):
    """Bad input data: names the subject, the file and the reason."""

    def __init__(self, subject: str, path, reason: str):
        self.subject, self.path, self.reason = subject, str(path), reason
        super().__init__(f"subject {subject}: {path}: {reason}")


def save_nifti(path, data: np.ndarray, affine: np.ndarray, frame_interval_s: float | None = None,
               dtype=None) -> None:
    """Write atomically with sform = qform = the affine (scanner space, code 1).

    A 4D array's pixdim[4] is the frame interval in seconds, or 0 when it is None (not
    recorded: frame_interval() reads None back, never nibabel's default of 1 s).
    """
    data = np.asarray(data if dtype is None else data.astype(dtype))
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    if data.ndim == 4:
        zooms = list(img.header.get_zooms())
        zooms[3] = 0.0 if frame_interval_s is None else frame_interval_s
        img.header.set_zooms(zooms)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(img, tmp)


def load_nifti(path, subject: str = "?"):
    """Return (array, affine, header); unreadable files raise InputError."""
    path = Path(path)
    if not path.exists():
        raise InputError(subject, path, "file is missing")
    try:
        img = nib.load(path)
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise InputError(subject, path, f"cannot read NIfTI ({exc.__class__.__name__}: {exc})") from exc
    return data, img.affine.copy(), img.header


def nifti_geometry(path, subject: str = "?") -> tuple[tuple, np.ndarray]:
    """(shape, affine) from the header alone: no voxel is read."""
    path = Path(path)
    if not path.exists():
        raise InputError(subject, path, "file is missing")
    try:
        img = nib.load(path)
    except Exception as exc:
        raise InputError(subject, path, f"cannot read NIfTI ({exc.__class__.__name__}: {exc})") from exc
    return tuple(img.shape), img.affine.copy()


def frame_interval(header) -> float | None:
    """Seconds between cine frames from the header (None if not recorded, zero or not finite)."""
    zooms = header.get_zooms()
    if len(zooms) < 4 or not np.isfinite(zooms[3]) or zooms[3] <= 0:
        return None
    unit = header.get_xyzt_units()[1]
    scale = {"msec": 1e-3, "usec": 1e-6}.get(unit, 1.0)
    return float(zooms[3]) * scale
