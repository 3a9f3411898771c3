"""Geometry core: the affine (voxel -> world, RAS mm) is the only source of geometry.

Every function here takes an affine and returns a new one when it moves voxels, so a
crop, shift or resampling never loses the link between pixels and world positions.
"""

from cinerecon.geometry.affine import (
    apply_affine,
    crop_affine,
    plane_normal,
    plane_pixel_centres,
    shift_slice_affine,
    slice_affine,
    spacing,
    stack_slice_affines,
    upsample_z_affine,
    world_to_voxel,
)
from cinerecon.geometry.resample import (
    resample_image_to_plane,
    resample_labels_to_plane,
    sample_image,
    sample_labels,
    upsample_stack_z,
)

__all__ = [
    "apply_affine",
    "crop_affine",
    "plane_normal",
    "plane_pixel_centres",
    "resample_image_to_plane",
    "resample_labels_to_plane",
    "sample_image",
    "sample_labels",
    "shift_slice_affine",
    "slice_affine",
    "spacing",
    "stack_slice_affines",
    "upsample_stack_z",
    "upsample_z_affine",
    "world_to_voxel",
]
