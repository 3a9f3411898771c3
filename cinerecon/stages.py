"""One subject through one pipeline stage: the unit of work of a shard job.

Each stage is a pair: `outputs(...)` lists the files the stage writes for a subject
(known before it runs, so cinerecon.batch can clear stale or partial files) and `run(...)`
writes them by calling the file-level library functions. Paths come from a Layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cinerecon.align.estimate import AlignSettings
from cinerecon.align.files import align_labels, align_subject
from cinerecon.baselines.files import reconstruct_subject
from cinerecon.evaluate import (
    label_phenotype_row,
    lax_rows,
    recon_phenotype_row,
    truth_metric_rows,
    truth_phenotype_row,
)
from cinerecon.io.files import write_parquet
from cinerecon.io.subject import VIEWS
from cinerecon.labels import lax_conventions, lax_structures
from cinerecon.layout import LAX_VIEWS, Layout
from cinerecon.preprocess.crop import crop_label_files, crop_subject_files
from cinerecon.preprocess.ingest import ingest_images, ingest_labels


@dataclass(frozen=True)
class Subject:
    """What a stage needs to know about a subject besides its ID.

    labelled: the subject has manual SAX labels; lax: {view: LAX label convention} of its
    manual LAX labels (cinerecon.labels.LAX_CONVENTIONS; None = `none`, no LAX labels).
    """
    id: str
    labelled: bool = False
    lax: dict | None = None

    @property
    def lax_conventions(self) -> dict:
        return lax_conventions(self.lax or "none")

    def lax_structures(self, view: str) -> dict:
        """{pipeline value: name} of the structures the manual labels of LAX `view` carry."""
        return lax_structures(self.lax_conventions[view.removeprefix("la_")], view.removeprefix("la_"))


def _views(files: dict, prefix: str = "") -> dict:
    return {v: files[f"{prefix}{v}"] for v in VIEWS}


# ---- synthetic cohort ---------------------------------------------------------------

def _label_plan(s: Subject, label_frames: str):
    from cinerecon.synth.cohort import LabelPlan

    return LabelPlan(frames=label_frames if s.labelled else None, lax=s.lax_conventions)


def synth_outputs(layout: Layout, s: Subject, dicom: dict | None = None, label_frames: str = "ed_es") -> list[Path]:
    folder = layout.synthetic(s.id)
    truth = folder / "truth"
    files = ([folder / f"{view}.nii.gz" for view in VIEWS]
             + [folder / f"label_{view}.nii.gz" for view in _label_plan(s, label_frames).label_views()]
             + [truth / n for n in ("label_ed.nii.gz", "label_es.nii.gz", "shifts.tsv",
                                    "phenotypes.json", "params.json")]
             + list(layout.highres_truth(s.id).values()))
    return files + (list(layout.synthetic_zips(s.id).values()) if dicom is not None else [])


def synth_run(layout: Layout, s: Subject, seed: int, index: dict, acquisition: dict,
              dicom: dict | None = None, label_frames: str = "ed_es") -> None:
    """index: {subject: position in the cohort} (seeds the subject's random streams);
    acquisition: the settings, or {subject: settings}.

    dicom: when not None, the subject is also written as UK Biobank DICOM zips with
    these quirks (cinerecon.synth.dicom.DicomQuirks), so the pipeline can start from DICOM.
    label_frames: the labelled subjects' label frames, `ed_es` (UK Biobank) or `all`.
    Unlabelled subjects get no label files; truth is written for every subject.
    """
    from cinerecon.synth.cohort import generate_subject
    from cinerecon.synth.scanner import AcquisitionConfig

    from cinerecon.workflow import subject_view

    generate_subject(s.id, seed, index[s.id], layout.synthetic(s.id),
                     AcquisitionConfig.from_dict(subject_view(acquisition, s.id)), _label_plan(s, label_frames))
    if dicom is not None:
        from cinerecon.synth.dicom import write_ukbb_zips

        zips = layout.synthetic_zips(s.id)
        write_ukbb_zips(layout.synthetic(s.id), s.id, zips["sax"].parent, dicom, seed=index[s.id])


# ---- ingest (NIfTI folders, or the synthetic cohort's files) -------------------------
def ingest_outputs(layout: Layout, s: Subject) -> list[Path]:
    return [*layout.nifti(s.id, s.labelled).values(), layout.ingest_report(s.id)]


def ingest_run(layout: Layout, s: Subject, sources: dict) -> dict:
    """Images first (validated before anything is written), then labels if the subject has them.

    sources: {subject: folder of its NIfTI files}.
    """
    source = sources[s.id]
    files = layout.nifti(s.id, s.labelled)
    report = ingest_images(source, s.id, _views(files), layout.ingest_report(s.id))
    if s.labelled:
        ingest_labels(source, s.id, _views(files, "label_"), lax=s.lax_conventions)
    return report


def ingest_dicom_outputs(layout: Layout, s: Subject) -> list[Path]:
    return [*layout.nifti(s.id, s.labelled).values(), layout.dicom_meta(s.id)]


def ingest_dicom_run(layout: Layout, s: Subject, zips: dict, label_folders: dict) -> dict:
    """UK Biobank cine zips -> NIfTI (cinerecon.io.ukbb_dicom), then labels if any.

    zips: {subject: [zip paths]}; label_folders: {subject: folder of label_{view}.nii.gz}.
    """
    from cinerecon.io.ukbb_dicom import ingest_ukbb_zips

    files = layout.nifti(s.id, s.labelled)
    meta = ingest_ukbb_zips(s.id, zips[s.id], _views(files), layout.dicom_meta(s.id))
    if s.labelled:
        ingest_labels(label_folders[s.id], s.id, _views(files, "label_"),
                      images_folder=files["sa"].parent, lax=s.lax_conventions)
    return meta


# ---- heart-centred crop ---------------------------------------------------------------
def crop_outputs(layout: Layout, s: Subject) -> list[Path]:
    files = [*layout.crop(s.id, s.labelled).values(), layout.crop_record(s.id)]
    return files + ([layout.centring(s.id)] if s.labelled else [])


def crop_run(layout: Layout, s: Subject, sax_size, lax_size) -> dict:
    src, dst = layout.nifti(s.id, s.labelled), layout.crop(s.id, s.labelled)
    record = crop_subject_files(s.id, _views(src), _views(dst), layout.crop_record(s.id),
                                sax_size, lax_size)
    if s.labelled:
        crop_label_files(s.id, _views(src, "label_"), layout.crop_record(s.id),
                         _views(dst, "label_"), layout.centring(s.id))
    return record


# ---- slice-misalignment correction ----------------------------------------------------
def align_outputs(layout: Layout, s: Subject) -> list[Path]:
    files = layout.aligned(s.id)
    return [files[k] for k in ("sa", "shifts", "report", *(("label_sa",) if s.labelled else ()))]


def align_run(layout: Layout, s: Subject, method: str, sax_thickness_mm: float = 8.0) -> None:
    crop, out = layout.crop(s.id, s.labelled), layout.aligned(s.id)
    with_labels = method == "labels"
    if with_labels and not s.labelled:
        raise ValueError(f"subject {s.id}: align.method 'labels' needs labels; the sheet has none")
    if with_labels and not any(set(s.lax_structures(v)) & {1, 2, 3} for v in LAX_VIEWS):
        raise ValueError(f"subject {s.id}: align.method 'labels' needs LV/RV labels on the LAX views; "
                         f"its LAX labels ({s.lax_conventions}) have none (use align.method intensity)")
    align_subject(s.id, method, crop["sa"], {v: crop[v] for v in LAX_VIEWS},
                  {"sa": out["sa"], "shifts": out["shifts"], "report": out["report"]},
                  sax_label_path=crop["label_sa"] if with_labels else None,
                  lax_label_paths={v: crop[f"label_{v}"] for v in LAX_VIEWS} if with_labels else None,
                  settings=AlignSettings(sax_thickness_mm=sax_thickness_mm))
    if s.labelled:
        align_labels(s.id, crop["label_sa"], out["shifts"], out["label_sa"])


# ---- segmentation network inference ---------------------------------------------------
def seg_outputs(layout: Layout, s: Subject) -> list[Path]:
    return [layout.seg(s.id)]


def seg_run(layout: Layout, s: Subject, model, checkpoint, frames: str, batch_size: int,
            device: str) -> dict:
    from cinerecon.models.seg_files import segment_subject

    aligned = layout.aligned(s.id)
    return segment_subject(s.id, aligned["sa"], checkpoint, layout.seg(s.id), frames,
                           aligned["label_sa"] if s.labelled else None, batch_size, device, model)


# ---- reconstruction baselines -----------------------------------------------------------
def recon_outputs(layout: Layout, s: Subject, method: str) -> list[Path]:
    return list(layout.recon(method, s.id).values())


def recon_run(layout: Layout, s: Subject, method: str, target_spacing_mm: float) -> dict:
    out = layout.recon(method, s.id)
    return reconstruct_subject(s.id, layout.aligned(s.id)["label_sa"], method, target_spacing_mm,
                               {"ED": out["ED"], "ES": out["ES"]}, out["record"])


# ---- evaluation of a reconstruction: LAX intersections, truth, phenotypes --------------
def evaluate_outputs(layout: Layout, s: Subject, method: str, truth: bool) -> list[Path]:
    files = [layout.eval_lax(method, s.id), layout.phenotypes(method, s.id)]
    return files + ([layout.eval_truth(method, s.id)] if truth else [])


def evaluate_run(layout: Layout, s: Subject, method: str, truth: bool) -> None:
    recon = layout.recon(method, s.id)
    volumes = {"ED": recon["ED"], "ES": recon["ES"]}
    crop = layout.crop(s.id, labels=True)
    write_parquet(layout.eval_lax(method, s.id),
                  lax_rows(s.id, method, volumes, recon["record"],
                           {v: crop[f"label_{v}"] for v in LAX_VIEWS},
                           {v: s.lax_structures(v) for v in LAX_VIEWS}))
    write_parquet(layout.phenotypes(method, s.id), recon_phenotype_row(s.id, method, volumes))
    if truth:
        t = layout.truth(s.id)
        write_parquet(layout.eval_truth(method, s.id),
                      truth_metric_rows(s.id, method, volumes, {"ED": t["ED"], "ES": t["ES"]}))


# ---- reference phenotypes: the acquired label stack, and the synthetic truth -----------
def reference_outputs(layout: Layout, s: Subject, truth: bool) -> list[Path]:
    return [layout.phenotypes("labels", s.id)] + ([layout.phenotypes("truth", s.id)] if truth else [])


def reference_run(layout: Layout, s: Subject, truth: bool) -> None:
    write_parquet(layout.phenotypes("labels", s.id),
                  label_phenotype_row(s.id, layout.aligned(s.id)["label_sa"]))
    if truth:
        write_parquet(layout.phenotypes("truth", s.id),
                      truth_phenotype_row(s.id, layout.truth(s.id)["phenotypes"]))


# ---- DirectSeg: the network's SAX segmentation against the manual labels ---------------
def directseg_outputs(layout: Layout, s: Subject) -> list[Path]:
    return [layout.eval_sax("directseg", s.id), layout.phenotypes("directseg", s.id)]


def directseg_run(layout: Layout, s: Subject) -> None:
    from cinerecon.models.seg_files import directseg_rows

    metrics, phen = directseg_rows(s.id, layout.seg(s.id), layout.aligned(s.id)["label_sa"])
    write_parquet(layout.eval_sax("directseg", s.id), metrics)
    write_parquet(layout.phenotypes("directseg", s.id), phen)


# ---- DeepRecon: batched inversion, lerp reconstruction, per-slice rows --------------------
def frame_labels(layout: Layout, s: Subject) -> Path:
    """The label cine that picks a subject's ED/ES slices for the generative methods: its
    manual labels, or the network's segmentation of every frame for an unlabelled subject."""
    return layout.aligned(s.id)["label_sa"] if s.labelled else layout.seg(s.id)


class BatchedInversion:
    """Inverts the ED/ES slices of all subjects of a shard in shared batches, then writes
    each subject's codes for every variant (step count) when `run` is called for it.

    The inversion runs when the first subject is asked for, over every subject of the shard
    whichever of them still need it (a resumed job), so that the batches, and therefore the
    bytes of every result, are those of an uninterrupted run.
    """

    def __init__(self, layout: Layout, subjects: list[Subject], G, E, perceptual, settings, device,
                 variants: dict):
        self.layout, self.variants = layout, variants  # {steps: method name}
        self.subjects, self.models, self.settings, self.device = subjects, (G, E, perceptual), settings, device
        self.errors, self.meta, self.codes, self.failure = {}, None, None, None
        self.history: list = []

    def _compute(self) -> None:
        from cinerecon.faults import ENVIRONMENT, fault_class
        from cinerecon.latent.deeprecon_files import invert_subjects, subject_slices

        if self.failure is not None:  # the shard's inversion failed: every subject fails with it
            raise self.failure

        slices = {}
        for s in self.subjects:
            try:
                slices[s.id] = subject_slices(s.id, self.layout.aligned(s.id)["sa"], frame_labels(self.layout, s))
            except Exception as exc:  # reported by run() for this subject alone
                self.errors[s.id] = exc
        try:
            self.codes = invert_subjects(slices, *self.models, self.settings, self.device, self.history)
        except Exception as exc:
            if fault_class(exc) != ENVIRONMENT:
                self.failure = exc
            raise
        self.meta = slices

    def outputs(self, layout: Layout, s: Subject) -> list[Path]:
        return [layout.latent(name, s.id) for name in self.variants.values()]

    def run(self, layout: Layout, s: Subject) -> None:
        from cinerecon.latent.deeprecon_files import save_latents

        if self.codes is None:
            self._compute()
        if s.id in self.errors:
            raise self.errors[s.id]
        meta = self.meta[s.id]
        for steps, name in self.variants.items():
            save_latents(layout.latent(name, s.id), self.codes[s.id][steps], meta["frames"], meta["n_slices"])


def recon_latent_outputs(layout: Layout, s: Subject, method: str) -> list[Path]:
    return list(layout.recon(method, s.id, images=True).values())


def recon_latent_run(layout: Layout, s: Subject, method: str, G, seg_model, target_spacing_mm: float,
                     device: str) -> dict:
    from cinerecon.latent.deeprecon_files import reconstruct_latent_subject

    out = layout.recon(method, s.id, images=True)
    return reconstruct_latent_subject(s.id, layout.latent(method, s.id), layout.aligned(s.id)["sa"], G,
                                      seg_model, target_spacing_mm, out, out["record"], device, method)


def acquired_rows_outputs(layout: Layout, s: Subject, method: str) -> list[Path]:
    return [layout.eval_sax(method, s.id), layout.eval_image(method, s.id)]


def acquired_rows_run(layout: Layout, s: Subject, method: str) -> None:
    from cinerecon.latent.deeprecon_files import acquired_slice_rows

    recon, aligned = layout.recon(method, s.id, images=True), layout.aligned(s.id)
    metrics, quality = acquired_slice_rows(s.id, method, recon, recon["record"], aligned["sa"],
                                           aligned["label_sa"])
    write_parquet(layout.eval_sax(method, s.id), metrics)
    write_parquet(layout.eval_image(method, s.id), quality)


# ---- held-out slices: rebuild each interior slice from its two neighbours ----------------
def heldout_outputs(layout: Layout, s: Subject, method: str) -> list[Path]:
    return [layout.eval_heldout(method, s.id)]


def heldout_linear_run(layout: Layout, s: Subject, method: str = "linear") -> None:
    from cinerecon.baselines.files import heldout_linear_rows

    aligned = layout.aligned(s.id)
    write_parquet(layout.eval_heldout(method, s.id), heldout_linear_rows(s.id, aligned["sa"], aligned["label_sa"]))


def heldout_latent_run(layout: Layout, s: Subject, method: str, G, seg_model, device: str) -> None:
    from cinerecon.latent.deeprecon_files import heldout_latent_rows

    aligned = layout.aligned(s.id)
    write_parquet(layout.eval_heldout(method, s.id),
                  heldout_latent_rows(s.id, method, layout.latent(method, s.id), aligned["sa"], aligned["label_sa"],
                                      G, seg_model, device))


# ---- DMCVR / DiffAE: a shard's slices encoded and decoded in shared batches ---------------
class BatchedDiffusion:
    """Encodes the ED/ES slices of all subjects of a shard, interpolates and decodes every
    fine-grid and held-out slice in shared batches; `run` then writes one subject's codes and
    volumes, `heldout_run` its held-out-slice rows."""

    def __init__(self, layout: Layout, subjects: list[Subject], model, seg_model, settings: dict,
                 target_spacing_mm: float, device, method: str, heldout_subjects=None):
        from cinerecon.latent.deeprecon_files import subject_slices
        from cinerecon.latent.dmcvr import DiffusionShard

        self.method, self.errors, self.meta = method, {}, {}
        for s in subjects:
            try:
                self.meta[s.id] = subject_slices(s.id, layout.aligned(s.id)["sa"], frame_labels(layout, s))
            except Exception as exc:  # reported by run() for this subject alone
                self.errors[s.id] = exc
        self.shard = DiffusionShard(self.meta, model, seg_model, settings, target_spacing_mm, device,
                                    heldout_subjects)

    def outputs(self, layout: Layout, s: Subject) -> list[Path]:
        return list(layout.recon(self.method, s.id, images=True).values()) + [layout.diffusion_codes(self.method, s.id)]

    def run(self, layout: Layout, s: Subject) -> None:
        if s.id in self.errors:
            raise self.errors[s.id]
        self.shard.write(s.id, self.meta[s.id], self.method, layout.recon(self.method, s.id, images=True),
                         layout.diffusion_codes(self.method, s.id))

    def heldout_outputs(self, layout: Layout, s: Subject) -> list[Path]:
        return heldout_outputs(layout, s, self.method)

    def heldout_run(self, layout: Layout, s: Subject) -> None:
        write_parquet(layout.eval_heldout(self.method, s.id), self.shard.heldout(s.id, self.meta[s.id], self.method))


# ---- W+SegNet: the Table 1 ablation that segments from the codes ---------------------------
def wplus_segnet_outputs(layout: Layout, s: Subject) -> list[Path]:
    return [layout.eval_sax("wplus_segnet", s.id)]


def wplus_segnet_run(layout: Layout, s: Subject, variant: str, model, device: str) -> None:
    from cinerecon.latent.wplus_segnet_files import wplus_segnet_rows

    aligned = layout.aligned(s.id)
    write_parquet(layout.eval_sax("wplus_segnet", s.id),
                  wplus_segnet_rows(s.id, layout.latent(variant, s.id), aligned["label_sa"], aligned["sa"], model,
                                    device))
