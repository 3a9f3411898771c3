"""Generate a synthetic UK-Biobank-like cohort: subjects sheet, cines, labels and truth.

Labels take the shape real UK Biobank labels have (``LabelPlan``, the demo's default):
manual SAX labels for a fraction of the subjects, at ED and ES only; LAX labels in the
ukbb_cardiac convention (atria only), with LV/RV on the LAX views for a few annotated
test subjects; no label files at all for the rest. The dense shape of earlier versions
(every frame, every structure on every view) stays available. Truth (3D labels at ED/ES,
shifts, phenotypes) is written for every subject, labelled or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cinerecon.geometry import apply_affine
from cinerecon.io.files import write_json, write_tsv
from cinerecon.io.nifti import save_nifti
from cinerecon.labels import LAX_CONVENTIONS, LAX_VIEWS, RVC, lax_conventions, lax_value_table
from cinerecon.synth import heart as H
from cinerecon.synth import scanner as S
from cinerecon.synth.annotation import annotate
from cinerecon.synth.highres import highres_plane, render_highres

SPLITS = ("train", "val", "test")


def subject_rng(cohort_seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """Independent, reproducible random stream per subject (and per purpose)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([cohort_seed, index, stream])))


@dataclass(frozen=True)
class LabelPlan:
    """Which manual label files a synthetic subject gets, in which file convention.

    frames: `ed_es` (UK Biobank: ED and ES labelled, every other frame background, on the
    SAX and LAX cines), `all` (dense) or None (an unlabelled subject: no label files).
    lax: {view: convention} (cinerecon.labels.LAX_CONVENTIONS); a view whose convention
    labels nothing gets no file (UK Biobank has no 3ch labels).
    """
    frames: str | None = "all"
    lax: dict = field(default_factory=lambda: lax_conventions("full"))

    def label_views(self) -> list[str]:
        """The views ("sa", "la_2ch", ...) that get a label file."""
        if self.frames is None:
            return []
        return ["sa"] + [f"la_{v}" for v in LAX_VIEWS if LAX_CONVENTIONS[self.lax[v]][v]]

    def frames_labelled(self, n_frames: int, es_frame: int) -> list[int]:
        return [0, es_frame] if self.frames == "ed_es" else list(range(n_frames))

    def file_labels(self, labels: np.ndarray, view: str, es_frame: int) -> np.ndarray:
        """A view's (X, Y, Z, T) labels in pipeline values -> what its label file holds."""
        out = labels.copy()
        if self.frames == "ed_es":
            kept = self.frames_labelled(out.shape[3], es_frame)
            out[..., [t for t in range(out.shape[3]) if t not in kept]] = 0
        if view != "sa":  # pipeline values -> the file convention's (others become background)
            lax_view = view.removeprefix("la_")
            out = lax_value_table(self.lax[lax_view], lax_view, to_file=True)[out]
        return out


# Defaults of `cohort.synthetic.labels`: the shape of real UK Biobank labels.
UKBB_LABELS = {"fraction": 0.5, "frames": "ed_es", "lax": "ukbb", "lax_full_test_subjects": 2}


def assign_labels(sheet: pd.DataFrame, seed: int, labels: dict) -> pd.DataFrame:
    """Add `has_labels` and `lax_labels` (the subject's LAX convention) to a synthetic sheet.

    In every split, round(fraction x size) subjects are labelled, at least one where the
    fraction is positive (so the segmentation network has train and val subjects and the
    test split has something to evaluate); the first `lax_full_test_subjects` labelled
    test subjects carry LV/RV on their LAX views (`full`), as the papers' annotated cases.
    The choice is random but fixed by the seed.
    """
    labels = {**UKBB_LABELS, **(labels or {})}
    fraction = float(labels["fraction"])
    if not 0 <= fraction <= 1:
        raise ValueError(f"cohort.synthetic.labels.fraction must be in [0, 1], got {fraction}")
    rng = np.random.default_rng([seed, 101])
    sheet = sheet.copy()
    sheet["has_labels"] = False
    for split in SPLITS:
        members = list(sheet.index[sheet["split"] == split])
        n = int(round(fraction * len(members)))
        if fraction > 0 and members:
            n = max(n, 1)
        chosen = [members[i] for i in sorted(rng.permutation(len(members))[:n])]
        sheet.loc[chosen, "has_labels"] = True
    # "" = the cohort's declared convention (cohort.synthetic.labels.lax, maybe per view)
    cohort_default = labels["lax"] if isinstance(labels["lax"], str) else ""
    sheet["lax_labels"] = np.where(sheet["has_labels"], cohort_default, "none")
    test_labelled = list(sheet.index[sheet["has_labels"] & (sheet["split"] == "test")])
    sheet.loc[test_labelled[: int(labels["lax_full_test_subjects"])], "lax_labels"] = "full"
    return sheet


# The second domain (Gemini-GAN's external site, the paper's Singapore set): another scanner
# (tissue contrast, noise, coil bias) and another population (smaller hearts, thinner walls).
# cohort.synthetic.source_domain.acquisition overrides these over the cohort's acquisition.
SOURCE_DOMAIN_ACQUISITION = {"contrast": "external", "noise_sigma": 0.05, "bias_strength": 0.3,
                             "lv_edv_range": [80.0, 150.0], "wall_range": [5.0, 10.0]}
def add_source_domain(sheet: pd.DataFrame, source: dict | None) -> pd.DataFrame:
    """Mark the sheet's subjects `target` and append `source_domain.n_subjects` of the
    second domain: test split, no manual labels (they are judged on their 3D truth), IDs and
    seeds after the target cohort's, so adding them changes no target subject."""
    sheet = sheet.assign(domain="target")
    n = int((source or {}).get("n_subjects", 0))
    if n <= 0:
        return sheet
    first = len(sheet)
    ids = [f"SYN{i:04d}" for i in range(first, first + n)]
    extra = pd.DataFrame({"subject": ids, "index": range(first, first + n), "split": "test", "has_labels": False,
                          "lax_labels": "none", "domain": "source"}, index=pd.Index(ids, name=sheet.index.name))
    return pd.concat([sheet, extra])


def source_acquisition(acquisition: dict | None, source: dict | None) -> dict:
    """The second domain's acquisition settings: the cohort's, then the domain defaults, then
    the user's `source_domain.acquisition`."""
    return {**(acquisition or {}), **SOURCE_DOMAIN_ACQUISITION, **((source or {}).get("acquisition") or {})}


def make_sheet(n_subjects: int, seed: int, fractions: dict) -> pd.DataFrame:
    """Subjects sheet (subject, index, split); every split non-empty once n >= 3."""
    if n_subjects < 1:
        raise ValueError("a synthetic cohort needs at least one subject")
    ids = [f"SYN{i:04d}" for i in range(n_subjects)]
    total = sum(fractions.get(s, 0.0) for s in SPLITS)
    if not total > 0:
        raise ValueError(f"split fractions {fractions} must sum to more than 0")
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
    """Phenotypes from the analytic shapes (ED = frame 0, ES = minimal LV volume).

    Atria (Bai et al. 2020's names): the atria swell as the ventricles contract (the phantom
    scales them with the contraction, and the base descends away from them), so their
    largest volume is at ventricular ES and their smallest at ED."""
    curve = [model.lv_volume_ml(f) for f in range(model.p.n_frames)]
    es = int(np.argmin(curve))
    ed_v, es_v = model.volumes_ml(0), model.volumes_ml(es)
    lvsv, rvsv = ed_v["LVC"] - es_v["LVC"], ed_v["RVC"] - es_v["RVC"]
    phen = {
        "LVEDV": ed_v["LVC"], "LVESV": es_v["LVC"], "LVSV": lvsv,
        "LVEF": 100 * lvsv / ed_v["LVC"], "LVM": ed_v["LVM"] * 1.05,
        "RVEDV": ed_v["RVC"], "RVESV": es_v["RVC"], "RVSV": rvsv,
        "RVEF": 100 * rvsv / ed_v["RVC"], "es_frame": es,
    }
    smallest, largest = model.atrial_volumes_ml(0), model.atrial_volumes_ml(es)
    for atrium in ("LA", "RA"):
        vmax, vmin = largest[atrium], smallest[atrium]
        phen.update({f"{atrium}Vmax": vmax, f"{atrium}Vmin": vmin, f"{atrium}SV": vmax - vmin,
                     f"{atrium}EF": 100 * (vmax - vmin) / vmax})
    return phen


def generate_subject(subject: str, cohort_seed: int, index: int, out_dir,
                     acq: S.AcquisitionConfig | None = None, label_plan: LabelPlan | None = None) -> dict:
    """Write one subject's NIfTI cines, labels (per `label_plan`, by default dense and full)
    and truth into out_dir; return the paths."""
    acq = acq or S.AcquisitionConfig()
    label_plan = label_plan or LabelPlan()
    label_views = set(label_plan.label_views())
    out = Path(out_dir)
    anatomy_rng = subject_rng(cohort_seed, index, 0)
    params = H.sample_params(anatomy_rng, acq.n_frames, acq.impaired_fraction, acq.lv_edv_range,
                             acq.lv_aspect_range, acq.wall_range, acq.anatomy())
    model = H.HeartModel(params)
    plan_rng = subject_rng(cohort_seed, index, 1)
    body = S.Body(plan_rng, model.centre_world())
    lut = S.tissue_intensities(plan_rng, acq.contrast)
    bias = S.bias_field(plan_rng, acq.bias_strength)
    heart_rate = float(plan_rng.uniform(55, 80))
    frame_s = 60.0 / heart_rate / acq.n_frames
    planes = [S.plan_sax(model, acq, plan_rng)]
    planes += [S.plan_lax(model, view, acq, plan_rng) for view in LAX_VIEWS]
    noise_rng = subject_rng(cohort_seed, index, 2)
    # the realistic phantom's draws have their own stream: the smooth phantom's stay as they were
    detail_rng = subject_rng(cohort_seed, index, 3)
    detail = S.ImageDetail(detail_rng, acq, model.centre_world())
    for plane in planes:
        through = acq.sax_through_plane_rms_mm if plane.name == "sa" else acq.lax_through_plane_rms_mm
        plane.breath_hold(detail_rng, through, acq.rotation_rms_deg, model.centre_world())

    annotator_rng = subject_rng(cohort_seed, index, 4)

    def coil(points):  # receive-coil bias and the off-resonance band, both static in the scanner
        return bias(points) * detail.band(points)
    frames = range(acq.n_frames)

    phen = true_phenotypes(model)
    # cardiac output (L/min): the cine spans one beat, so stroke volume x heart rate
    phen.update({"heart_rate_bpm": heart_rate, "LVCO": phen["LVSV"] * heart_rate / 1000,
                 "RVCO": phen["RVSV"] * heart_rate / 1000})
    written, shift_rows = {}, []
    for plane in planes:
        images = np.empty(plane.shape + (plane.n_slices, acq.n_frames), dtype=np.int16)
        labels = np.empty(plane.shape + (plane.n_slices, acq.n_frames), dtype=np.uint8)
        for k in range(plane.n_slices):
            table = H.MUSCLES_AS_MYOCARDIUM if acq.lax_muscles_as_myocardium and plane.name != "sa" else None
            clean, lab = S.render_plane(model, body, plane, k, lut, frames, acq.profile_samples, detail, table)
            images[:, :, k] = S.finish_image(clean, plane.affine, k, coil, noise_rng, acq.noise_sigma)
            if plane.name == "sa":
                lab[lab > RVC] = 0   # SAX labels have no atria
            labels[:, :, k] = lab
            world = S.heart_displacement(plane, k)
            # SAX: the LV axis's in-plane displacement (what alignment should find); LAX: the shift
            dx, dy = S.axis_shift(plane, k, model.origin, model.rotation[:, 2]) if plane.name == "sa" \
                else plane.shifts_mm[k]
            shift_rows.append({"view": plane.name, "slice": k, "dx_mm": dx,
                               "dy_mm": dy, "dz_mm": plane.through_mm[k],
                               "rotation_deg": plane.rotation_deg(k), "x_mm": world[0],
                               "y_mm": world[1], "z_mm": world[2]})
        written[plane.name] = out / f"{plane.name}.nii.gz"
        save_nifti(written[plane.name], images, plane.affine, frame_s)
        if plane.name in label_views:
            drawn = labels
            if acq.annotation_sd_mm:  # as annotators draw them, on the frames they label
                drawn = labels.copy()
                for t in label_plan.frames_labelled(acq.n_frames, phen["es_frame"]):
                    for k in range(plane.n_slices):
                        drawn[:, :, k, t] = annotate(labels[:, :, k, t], acq.pixel_mm, acq.annotation_sd_mm,
                                                     annotator_rng)
            written[f"label_{plane.name}"] = out / f"label_{plane.name}.nii.gz"
            save_nifti(written[f"label_{plane.name}"], label_plan.file_labels(drawn, plane.name, phen["es_frame"]),
                       plane.affine, frame_s)

    # the paired 3D acquisition (its own noise stream: nothing else changes)
    hr_plane = highres_plane(model, planes[0], acq)
    highres = render_highres(model, body, hr_plane, lut, {"ED": 0, "ES": phen["es_frame"]}, acq, detail, coil,
                             subject_rng(cohort_seed, index, 5))
    for name, volume in highres.items():
        written[f"truth_sr_{name}"] = out / "truth" / f"sr_{name.lower()}.nii.gz"
        save_nifti(written[f"truth_sr_{name}"], volume, hr_plane.affine)

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
