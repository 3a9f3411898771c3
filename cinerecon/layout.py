"""Where every per-subject file lives under the results root (DESIGN.md, "Data flow").

Shard jobs (cinerecon.batch) write many subjects' files; rules declare only the shard
manifests, so this one table of paths is what rules, scripts and tests share.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cinerecon.io.subject import VIEWS

LAX_VIEWS = tuple(v for v in VIEWS if v != "sa")
PHASES = ("ED", "ES")


@dataclass(frozen=True)
class Layout:
    results: Path

    def __init__(self, results):
        object.__setattr__(self, "results", Path(results))

    @classmethod
    def of_manifest(cls, path) -> "Layout":
        """The layout a shard manifest (results/shards/{stage}/{shard}.tsv) belongs to."""
        return cls(Path(path).parents[2])

    # ---- inputs and preprocessing --------------------------------------------------
    def synthetic(self, subject: str) -> Path:
        return self.results / "synthetic" / subject

    def truth(self, subject: str) -> dict:
        folder = self.synthetic(subject) / "truth"
        return {"ED": folder / "label_ed.nii.gz", "ES": folder / "label_es.nii.gz",
                "phenotypes": folder / "phenotypes.json", "shifts": folder / "shifts.tsv"}

    def highres_truth(self, subject: str) -> dict:
        """The paired 3D acquisition at ED and ES (cinerecon.synth.highres): image and SAX labels."""
        folder = self.synthetic(subject) / "truth"
        return {f"{kind}_{p}": folder / f"sr_{kind}_{p.lower()}.nii.gz" for kind in ("image", "label") for p in PHASES}

    def nifti(self, subject: str, labels: bool = False) -> dict:
        return self._views("nifti", subject, labels)

    def ingest_report(self, subject: str) -> Path:
        return self.results / "nifti" / subject / "ingest.json"

    def dicom_meta(self, subject: str) -> Path:
        return self.results / "nifti" / subject / "meta.json"

    def synthetic_zips(self, subject: str) -> dict:
        """The synthetic subject written as UK Biobank zips (fields 20209 SAX, 20208 LAX)."""
        folder = self.synthetic(subject) / "dicom"
        return {"sax": folder / f"{subject}_20209_2_0.zip", "lax": folder / f"{subject}_20208_2_0.zip"}

    def crop(self, subject: str, labels: bool = False) -> dict:
        return self._views("crop", subject, labels)

    def crop_record(self, subject: str) -> Path:
        return self.results / "crop" / subject / "crop.json"

    def centring(self, subject: str) -> Path:
        return self.results / "crop" / subject / "centring.json"

    def aligned(self, subject: str) -> dict:
        folder = self.results / "aligned" / subject
        return {"sa": folder / "sa.nii.gz", "label_sa": folder / "label_sa.nii.gz",
                "shifts": folder / "shifts.tsv", "report": folder / "align.json"}

    # ---- models, reconstructions, evaluation ---------------------------------------
    def seg(self, subject: str) -> Path:
        return self.results / "seg" / subject / "seg_sa.nii.gz"

    def seg_record(self, subject: str) -> Path:
        """ED/ES from the predicted LV curve, volume curves, heart rate, QC flags."""
        return self.results / "seg" / subject / "cine.json"

    # ---- cohort outputs: every subject, from the predicted segmentation --------------
    def cohort_recon(self, method: str, subject: str) -> dict:
        folder = self.results / "cohort" / "recon" / method / subject
        return {"ED": folder / "label_ed.nii.gz", "ES": folder / "label_es.nii.gz", "record": folder / "recon.json"}

    def cohort_phenotypes(self, method: str, subject: str) -> Path:
        return self.results / "cohort" / "phenotypes" / method / f"{subject}.parquet"

    def recon(self, method: str, subject: str, images: bool = False) -> dict:
        folder = self.results / "recon" / method / subject
        files = {"ED": folder / "label_ed.nii.gz", "ES": folder / "label_es.nii.gz",
                 "record": folder / "recon.json"}
        if images:  # generative methods also write the high-resolution images
            files.update({"image_ED": folder / "image_ed.nii.gz", "image_ES": folder / "image_es.nii.gz"})
        return files

    def latent(self, method: str, subject: str) -> Path:
        return self.results / "latent" / method / subject / "wplus.npz"

    def diffusion_codes(self, method: str, subject: str) -> Path:
        return self.results / "latent" / method / subject / "codes.npz"

    def eval_heldout(self, method: str, subject: str) -> Path:
        return self.results / "eval" / "heldout" / method / f"{subject}.parquet"

    def eval_image(self, method: str, subject: str) -> Path:
        return self.results / "eval" / "image" / method / f"{subject}.parquet"

    def eval_lax(self, method: str, subject: str) -> Path:
        return self.results / "eval" / "lax" / method / f"{subject}.parquet"

    def eval_truth(self, method: str, subject: str) -> Path:
        return self.results / "eval" / "truth" / method / f"{subject}.parquet"

    def eval_superres(self, subject: str) -> Path:
        """Every method's rows against the subject's 3D truth (Gemini-GAN's Tables 2 and 3)."""
        return self.results / "eval" / "superres" / f"{subject}.parquet"

    def eval_sax(self, method: str, subject: str) -> Path:
        return self.results / "eval" / "sax" / method / f"{subject}.parquet"

    def phenotypes(self, method: str, subject: str) -> Path:
        return self.results / "phenotypes" / method / f"{subject}.parquet"

    def mae_inputs(self, subject: str) -> Path:
        """The whole-heart MAE's tensors of a subject (cinerecon.mae.data)."""
        return self.results / "mae" / "inputs" / f"{subject}.npz"

    def eval_mae(self, kind: str, subject: str) -> Path:
        """The MAE's rows of a test subject: kind phenotypes | segmentation | robustness."""
        return self.results / "eval" / "mae" / kind / f"{subject}.parquet"

    # ---- shards -------------------------------------------------------------------
    def manifest(self, stage: str, shard: str) -> Path:
        return self.results / "shards" / stage / f"{shard}.tsv"

    def _views(self, stage: str, subject: str, labels: bool) -> dict:
        folder = self.results / stage / subject
        files = {v: folder / f"{v}.nii.gz" for v in VIEWS}
        if labels:
            files.update({f"label_{v}": folder / f"label_{v}.nii.gz" for v in VIEWS})
        return files
