"""Generate a synthetic UK-Biobank-like cohort: subjects sheet, cines, labels and truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cinerecon.geometry import apply_affine
from cinerecon.io.files import write_json, write_tsv
from cinerecon.io.nifti import save_nifti
from cinerecon.labels import LAX_VIEWS, RVC
from cinerecon.synth import heart as H
from cinerecon.synth import scanner as S

SPLITS = ("train", "val", "test")


def subject_rng(cohort_seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """Independent, reproducible random stream per subject (and per purpose)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([cohort_seed, index, stream])))


def make_sheet(n_subjects: int, seed: int, fractions: dict) -> pd.DataFrame:
    """Subjects sheet (subject, index, split); every split non-empty once n >= 3."""
    if n_subjects < 1:
        raise ValueError("a synthetic cohort needs at least one subject")
    ids = [f"SYN{i:04d}" for i in range(n_subjects)]
    total = sum(fractions.get(s, 0.0) for s in SPLITS)
    counts = [int(np.floor(n_subjects * fractions.get(s, 0.0) / total)) for s in SPLITS]
    for i in range(len(SPLITS)):
        if n_subjects >= len(SPLITS) and counts[i] == 0 and fractions.get(SPLITS[i], 0) > 0:
            counts[i] = 1
    counts[0] = n_subjects - sum(counts[1:])  # the remainder trains
    order = np.random.default_rng(seed).permutation(n_subjects)
    split = np.empty(n_subjects, dtype=object)
    split[order] = np.repeat(SPLITS, counts)
    return pd.DataFrame({"subject": ids, "index": range(n_subjects), "split": split})


def truth_grid(model: H.HeartModel, sax_affine: np.ndarray, spacing_mm: float):
    """Affine and shape of an isotropic grid aligned with the SAX axes around the heart."""
    rot = np.stack([sax_affine[:3, k] / np.linalg.norm(sax_affine[:3, k]) for k in range(3)], 1)
    lo, hi = model.bounds_local()
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])])
    local = model.to_world(corners) @ rot           # corners in SAX-aligned coordinates
    start, stop = local.min(0), local.max(0)
    shape = tuple(int(np.ceil((stop - start)[k] / spacing_mm)) + 1 for k in range(3))
    affine = np.eye(4)
    affine[:3, :3] = rot * spacing_mm
    affine[:3, 3] = rot @ start
    return affine, shape


def render_truth(model: H.HeartModel, affine: np.ndarray, shape, frame: int) -> np.ndarray:
    """Labels (0-5) of the undisplaced heart on a 3D grid, evaluated slab by slab."""
    out = np.zeros(shape, dtype=np.uint8)
    i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    for k in range(shape[2]):
        ijk = np.stack([i, j, np.full(i.shape, k)], axis=-1)
        out[:, :, k] = model.labels(apply_affine(affine, ijk), frame)
    return out


def crop_to_content(labels: list[np.ndarray], affine: np.ndarray, margin: int):
    """Crop label volumes to their joint bounding box plus a margin (voxels)."""
    nonzero = np.argwhere(np.any([lab > 0 for lab in labels], axis=0))
    lo = np.maximum(nonzero.min(0) - margin, 0)
    hi = np.minimum(nonzero.max(0) + margin + 1, labels[0].shape)
    new_affine = affine.copy()
    new_affine[:3, 3] = apply_affine(affine, lo)
    return [lab[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] for lab in labels], new_affine


def true_phenotypes(model: H.HeartModel) -> dict:
    """Phenotypes from the analytic shapes (ED = frame 0, ES = minimal LV volume)."""
    curve = [model.lv_volume_ml(f) for f in range(model.p.n_frames)]
    es = int(np.argmin(curve))
    ed_v, es_v = model.volumes_ml(0), model.volumes_ml(es)
    lvsv, rvsv = ed_v["LVC"] - es_v["LVC"], ed_v["RVC"] - es_v["RVC"]
    return {
        "LVEDV": ed_v["LVC"], "LVESV": es_v["LVC"], "LVSV": lvsv,
        "LVEF": 100 * lvsv / ed_v["LVC"], "LVM": ed_v["LVM"] * 1.05,
        "RVEDV": ed_v["RVC"], "RVESV": es_v["RVC"], "RVSV": rvsv,
        "RVEF": 100 * rvsv / ed_v["RVC"], "es_frame": es,
    }


def generate_subject(subject: str, cohort_seed: int, index: int, out_dir,
                     acq: S.AcquisitionConfig | None = None) -> dict:
    """Write one subject's NIfTI cines, labels and truth into out_dir; return the paths."""
    acq = acq or S.AcquisitionConfig()
    out = Path(out_dir)
    anatomy_rng = subject_rng(cohort_seed, index, 0)
    params = H.sample_params(anatomy_rng, acq.n_frames, acq.impaired_fraction)
    model = H.HeartModel(params)
    plan_rng = subject_rng(cohort_seed, index, 1)
    body = S.Body(plan_rng, model.centre_world())
    lut = S.tissue_intensities(plan_rng)
    bias = S.bias_field(plan_rng, acq.bias_strength)
    heart_rate = float(plan_rng.uniform(55, 80))
    frame_s = 60.0 / heart_rate / acq.n_frames
    planes = [S.plan_sax(model, acq, plan_rng)]
    planes += [S.plan_lax(model, view, acq, plan_rng) for view in LAX_VIEWS]
    noise_rng = subject_rng(cohort_seed, index, 2)
    frames = range(acq.n_frames)

    written, shift_rows = {}, []
    for plane in planes:
        images = np.empty(plane.shape + (plane.n_slices, acq.n_frames), dtype=np.int16)
        labels = np.empty(plane.shape + (plane.n_slices, acq.n_frames), dtype=np.uint8)
        for k in range(plane.n_slices):
            clean, lab = S.render_plane(model, body, plane, k, lut, frames, acq.profile_samples)
            images[:, :, k] = S.finish_image(clean, plane.affine, k, bias, noise_rng, acq.noise_sigma)
            if plane.name == "sa":
                lab[lab > RVC] = 0   # SAX labels have no atria
            labels[:, :, k] = lab
            world = S.heart_displacement(plane, k)
            shift_rows.append({"view": plane.name, "slice": k, "dx_mm": plane.shifts_mm[k, 0],
                               "dy_mm": plane.shifts_mm[k, 1], "x_mm": world[0],
                               "y_mm": world[1], "z_mm": world[2]})
        written[plane.name] = out / f"{plane.name}.nii.gz"
        written[f"label_{plane.name}"] = out / f"label_{plane.name}.nii.gz"
        save_nifti(written[plane.name], images, plane.affine, frame_s)
        save_nifti(written[f"label_{plane.name}"], labels, plane.affine, frame_s)

    phen = true_phenotypes(model)
    grid_affine, grid_shape = truth_grid(model, planes[0].affine, acq.truth_spacing_mm)
    ed = render_truth(model, grid_affine, grid_shape, 0)
    es = render_truth(model, grid_affine, grid_shape, phen["es_frame"])
    (ed, es), grid_affine = crop_to_content([ed, es], grid_affine, margin=5)
    truth = out / "truth"
    written["truth_ed"] = truth / "label_ed.nii.gz"
    written["truth_es"] = truth / "label_es.nii.gz"
    save_nifti(written["truth_ed"], ed, grid_affine)
    save_nifti(written["truth_es"], es, grid_affine)
    written["truth_shifts"] = truth / "shifts.tsv"
    write_tsv(written["truth_shifts"], pd.DataFrame(shift_rows))
    written["truth_phenotypes"] = truth / "phenotypes.json"
    write_json(written["truth_phenotypes"], {"subject": subject, **phen})
    written["truth_params"] = truth / "params.json"
    write_json(written["truth_params"], {
        "subject": subject, "cohort_seed": cohort_seed, "index": index,
        "heart": params.to_dict(), "heart_rate_bpm": heart_rate, "frame_interval_s": frame_s,
        "acquisition": {k: (list(v) if isinstance(v, tuple) else v)
                        for k, v in acq.__dict__.items()},
    })
    return written
