"""Heart-centred cropping without labels.

The heart is the part of a cine that moves: the temporal standard deviation of each
pixel is far above the noise floor on moving blood/myocardium boundaries. Per SAX slice
the moving pixels are closed and hole-filled into regions (a ring around the LV blood
pool becomes the whole LV), so the centre is the centroid of the heart's area rather
than of its edges (which would lean towards the strongly moving RV free wall). When LAX
views exist, their planes intersect along the LV long axis, and regions far from that
axis (flow artefacts, breathing at the body wall) are ignored. Every view is cropped
around the same world point, so the crops stay mutually consistent.
"""

from __future__ import annotations

import json

import numpy as np
from scipy import ndimage

from cinerecon.geometry import apply_affine, crop_affine, plane_normal, world_to_voxel
from cinerecon.io.files import write_json
from cinerecon.io.nifti import InputError, frame_interval, load_nifti, save_nifti

NOISE_FACTOR = 3.0          # motion threshold, in units of the median temporal std
AXIS_GATE_MM = 70.0         # regions centred farther than this from the LAX axis are ignored
MAX_REGION_MM2 = 150.0**2   # a filled region larger than this is not a heart section


def temporal_std(cine: np.ndarray) -> np.ndarray:
    """Per-voxel standard deviation over the last (time) axis."""
    return np.asarray(cine, dtype=np.float32).std(axis=-1)


def motion_regions(cine: np.ndarray, affine: np.ndarray, axis=None) -> np.ndarray:
    """(N, 3) world positions of the voxels inside the moving regions of each slice."""
    std = temporal_std(cine)
    moving = std > NOISE_FACTOR * max(float(np.median(std)), 1e-6)
    pixel_mm2 = float(np.prod(np.linalg.norm(affine[:3, :2], axis=0)))
    points = []
    for k in range(moving.shape[2]):
        filled = ndimage.binary_fill_holes(ndimage.binary_closing(moving[:, :, k], iterations=2))
        regions, n = ndimage.label(filled)
        for r in range(1, n + 1):
            idx = np.argwhere(regions == r)
            if len(idx) * pixel_mm2 > MAX_REGION_MM2:
                continue
            world = apply_affine(affine, np.column_stack([idx, np.full(len(idx), k)]))
            if axis is not None and distance_to_line(world.mean(0, keepdims=True), axis)[0] > AXIS_GATE_MM:
                continue
            points.append(world)
    return np.concatenate(points) if points else np.empty((0, 3))


def long_axis_from_lax(lax_affines: list[np.ndarray]):
    """Line (point, unit direction) closest to lying in every LAX plane, or None.

    The LAX views are all planned through the LV long axis, so their common line is
    that axis. Needs two planes that are not parallel.
    """
    if len(lax_affines) < 2:
        return None
    normals = np.array([plane_normal(a) for a in lax_affines])
    offsets = np.array([n.dot(a[:3, 3]) for n, a in zip(normals, lax_affines)])
    _, sing, vt = np.linalg.svd(normals)
    if sing[1] < 0.2:  # all planes (nearly) parallel: no line
        return None
    direction = vt[-1]
    point = np.linalg.lstsq(normals, offsets, rcond=None)[0]
    point -= point.dot(direction) * direction
    return point, direction


def distance_to_line(points: np.ndarray, line) -> np.ndarray:
    point, direction = line
    rel = points - point
    return np.linalg.norm(rel - np.outer(rel @ direction, direction), axis=1)


def estimate_heart_centre(views: dict) -> dict:
    """Heart centre (world mm) from {name: (cine (X,Y,Z,T), affine)}: SAX motion regions,
    gated by the long axis of the LAX views when there are at least two of them."""
    lax = [aff for name, (_, aff) in views.items() if name.startswith("la_")]
    axis = long_axis_from_lax(lax)
    cine, affine = views["sa"]
    points = motion_regions(cine, affine, axis)
    if len(points) == 0 and axis is not None:
        points = motion_regions(cine, affine, None)
    if len(points) == 0:
        raise ValueError("no motion above the noise floor in the SAX cine: cannot find the heart")
    return {"centre_mm": points.mean(axis=0).tolist(), "used_long_axis": axis is not None,
            "long_axis_direction": None if axis is None else axis[1].tolist()}


def crop_start(affine: np.ndarray, centre_world, size: tuple[int, int]) -> tuple[int, int]:
    """First in-plane voxel of a size[0] x size[1] box centred on the world point."""
    ci, cj, _ = world_to_voxel(affine, np.asarray(centre_world))
    return int(np.round(ci - (size[0] - 1) / 2)), int(np.round(cj - (size[1] - 1) / 2))


def crop_volume(data: np.ndarray, affine: np.ndarray, start: tuple[int, int],
                size: tuple[int, int]):
    """Crop the first two axes to [start, start + size); zero-pad outside the image.

    Returns the cropped array and its affine (voxel (0, 0) is voxel `start` of the input).
    """
    out = np.zeros(tuple(size) + data.shape[2:], dtype=data.dtype)
    src = [slice(max(s, 0), min(s + n, dim)) for s, n, dim in zip(start, size, data.shape[:2])]
    dst = [slice(sl.start - s, sl.stop - s) for sl, s in zip(src, start)]
    if all(sl.stop > sl.start for sl in src):
        out[dst[0], dst[1]] = data[src[0], src[1]]
    return out, crop_affine(affine, (start[0], start[1], 0))


def label_centroid(labels: np.ndarray, affine: np.ndarray):
    """World centroid of all foreground labels (ED frame of a 4D label array), or None."""
    frame = labels[..., 0] if labels.ndim == 4 else labels
    idx = np.argwhere(frame > 0)
    if len(idx) == 0:
        return None
    return apply_affine(affine, idx).mean(axis=0)


def centring_error(centre_world, labels: np.ndarray, affine: np.ndarray) -> dict:
    """Distance (mm) of the estimated centre from the SAX label centroid: 3D and in-plane."""
    truth = label_centroid(labels, affine)
    if truth is None:
        return {"centring_error_mm": None, "centring_error_inplane_mm": None}
    diff = np.asarray(centre_world) - truth
    normal = plane_normal(affine)
    inplane = diff - diff.dot(normal) * normal
    return {"centring_error_mm": float(np.linalg.norm(diff)),
            "centring_error_inplane_mm": float(np.linalg.norm(inplane)),
            "label_centroid_mm": truth.tolist()}


def crop_subject(images: dict, sax_size, lax_size) -> tuple[dict, dict]:
    """Crop every view around one label-free heart centre.

    images: {view: (cine, affine)}. Returns ({view: (cropped, affine)}, crop record) where
    the record holds the centre and each view's box, so labels can be cropped identically.
    """
    centre = estimate_heart_centre(images)
    record = {**centre, "boxes": {}}
    cropped = {}
    for view, (data, affine) in images.items():
        size = tuple(sax_size if view == "sa" else lax_size)
        start = crop_start(affine, centre["centre_mm"], size)
        cropped[view] = crop_volume(data, affine, start, size)
        record["boxes"][view] = {"start": list(start), "size": list(size)}
    return cropped, record


def apply_crop_record(data: np.ndarray, affine: np.ndarray, box: dict):
    """Crop another array (labels) of a view with the box chosen for its image."""
    return crop_volume(data, affine, tuple(box["start"]), tuple(box["size"]))


def crop_subject_files(subject: str, inputs: dict, outputs: dict, record_path,
                       sax_size, lax_size) -> dict:
    """File-level crop step: read every view, crop around one centre, write all."""
    images, intervals = {}, {}
    for view, path in inputs.items():
        data, affine, header = load_nifti(path, subject)
        images[view] = (data, affine)
        intervals[view] = frame_interval(header)
    try:
        cropped, record = crop_subject(images, sax_size, lax_size)
    except ValueError as exc:
        raise InputError(subject, inputs["sa"], str(exc)) from exc
    for view, (data, affine) in cropped.items():
        save_nifti(outputs[view], data, affine, intervals[view])
    record["subject"] = subject
    write_json(record_path, record)
    return record


def crop_label_files(subject: str, inputs: dict, record_path, outputs: dict, report_path) -> dict:
    """Crop labels with the boxes chosen for their images; report the centring error."""
    record = json.loads(open(record_path).read())
    report = {"subject": subject}
    for view, path in inputs.items():
        labels, affine, _ = load_nifti(path, subject)
        if view == "sa":
            report.update(centring_error(record["centre_mm"], labels, affine))
        data, new_affine = apply_crop_record(labels, affine, record["boxes"][view])
        lost = int((labels > 0).sum() - (data > 0).sum())
        report[f"labelled_voxels_outside_crop_{view}"] = lost
        save_nifti(outputs[view], data, new_affine, dtype=np.uint8)
    write_json(report_path, report)
    return report
