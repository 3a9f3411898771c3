"""End-to-end Snakemake runs on tiny cohorts (synthetic, and NIfTI with a bad subject)."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from cinerecon.io.subject import VIEWS
from cinerecon.models.train_seg import load_checkpoint, save_checkpoint
from cinerecon.workflow import AUDIT_ENV

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.workflow


def job_counts(output: str) -> dict:
    """{rule: count} from the 'Job stats' table of a Snakemake (dry-)run."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats"))
    counts = {}
    for line in lines[start + 3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


# --max-threads 1: each job on one thread, as before rules declared threads (GPU rules' 8,
# capped at 2, would run them one at a time on the 2-core runner), and the same numerics in
# every run a test compares
def snakemake(workdir, *args, env=None):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--cores", "2", "--max-threads", "1", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO,
                          env=None if env is None else {**os.environ, **env})


# The tiny cohort's MAE section (tests/data/tiny.yaml), for runs over other cohorts
TINY_MAE = yaml.safe_load((REPO / "tests/data/tiny.yaml").read_text())["mae"]


def tiny_config(folder: Path) -> dict:
    cfg = yaml.safe_load((REPO / "tests/data/tiny.yaml").read_text())
    cfg["results"] = str(folder / "results")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    return cfg


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny synthetic cohort run once (no GPU here: GPU-tagged jobs side by side)."""
    folder = tmp_path_factory.mktemp("tiny")
    tiny_config(folder)
    run = snakemake(folder, "--configfile", str(folder / "tiny.yaml"),
                    env={AUDIT_ENV: str(folder / "reads")})
    assert run.returncode == 0, run.stderr[-3000:]
    return folder


def results_bytes(results: Path) -> dict:
    """{relative path: bytes} of every manifest, checkpoint and table of a run."""
    files = [*results.glob("shards/*/*.tsv"), *results.glob("models/**/*.pt"), *results.glob("tables/*")]
    return {str(p.relative_to(results)): p.read_bytes() for p in files}


def test_a_killed_run_resumes_to_the_same_bytes_as_an_uninterrupted_one(tiny_run, tmp_path):
    """One GPU-tagged job at a time, SIGKILLed (Snakemake and its job) during subject 3 of 4
    of the synthetic cohort's shard, unlocked and rerun: the finished subjects are not redone,
    no temporary file is left, and every manifest, checkpoint and table equals the bytes of
    the uninterrupted run above (which ran two GPU-tagged jobs at a time).

    (`--cores 2` rather than 1 keeps CI short; `.ci/slurm_demo.sh` compares the demo's
    manifests between a local run and SLURM jobs too.)"""
    import os
    import signal
    import time

    tiny_config(tmp_path)
    config = str(tmp_path / "tiny.yaml")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", config, "--cores", "2", "--max-threads", "1"]
    journal = tmp_path / "results/shards/synth/b0000.journal"
    job = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and job.poll() is None:
            if journal.exists() and len(journal.read_text().splitlines()) >= 2:
                break
            time.sleep(0.05)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    assert len(journal.read_text().splitlines()) == 2, "the kill came too late to test resumption"
    assert snakemake(tmp_path, "--configfile", config, "--unlock").returncode == 0
    rerun = snakemake(tmp_path, "--configfile", config, "--rerun-incomplete")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    results = tmp_path / "results"
    assert (results / "logs/synth/b0000.log").read_text().count("not recomputed") == 2
    assert not list(results.rglob(".*.tmp*"))
    mine, reference = results_bytes(results), results_bytes(tiny_run / "results")
    assert sorted(mine) == sorted(reference)
    differ = [name for name in mine if mine[name] != reference[name]]
    assert not differ, f"{len(differ)} of {len(mine)} files differ: {differ[:10]}"


def uncovered_reads(results: Path, audits: Path) -> list[str]:
    """Files a shard stage read that neither a declared input nor a manifest chained to one
    covers: each read must be the stage's own output, a declared input (or one of an upstream
    stage, reached through the manifests), or an output of a stage so reached."""
    records = {r["manifest"]: r for r in (json.loads(p.read_text()) for p in audits.glob("*.json"))}
    producer = {}
    for journal in results.glob("shards/*/*.journal"):
        for line in journal.read_text().splitlines():
            for path in json.loads(line).get("outputs", []):
                producer[path] = str(journal.relative_to(results).with_suffix(".tsv"))
    problems = []
    for manifest, record in records.items():
        reachable, todo = set(), list(record["inputs"])
        while todo:
            item = todo.pop()
            if item not in reachable:
                reachable.add(item)
                todo += records.get(item, {}).get("inputs", [])
        for path in record["reads"]:
            if path.endswith(".journal") or path in reachable or producer.get(path) in reachable | {manifest}:
                continue
            problems.append(f"{manifest} read {path} (made by {producer.get(path, 'no shard stage')})")
    return problems


def test_every_file_a_stage_reads_is_covered_by_its_declared_inputs(tiny_run):
    audits = tiny_run / "reads"
    assert len(list(audits.glob("*.json"))) > 20  # every shard stage of the tiny run
    reads = [json.loads(p.read_text())["reads"] for p in audits.glob("*.json")]
    assert any(r.startswith("aligned/") for rs in reads for r in rs)  # the audit sees NIfTI reads
    assert uncovered_reads(tiny_run / "results", audits) == []


TRAININGS = {"train_seg", "train_stylegan2", "train_encoder", "train_diffusion", "train_gemini", "train_vama",
             "train_mae", "finetune_mae"}


@pytest.mark.parametrize("section, key, value, retrains", [
    # (V-AMA's landmarks and ED/ES of unlabelled subjects come from the segmentation)
    ("segmentation", "predict_frames", "ed_es", {"train_vama"}),
    ("deeprecon", "inversion", {"steps": [0, 6], "batch_size": 64}, set()),
    ("deeprecon", "motion", {"source": "SYN0001", "target": "SYN0002", "frame_stride": 3}, set()),
    ("dmcvr", "ddim_steps", 3, set()),
    ("dmcvr", "refine", 2, set()),
    ("dmcvr", "inference_batch_size", 8, set()),
    ("dmcvr", "subjects_per_pass", 1, set()),
    ("recon", "target_spacing_mm", 1.5, set()),
    ("evaluation", "overlay_subjects", 2, set()),
    ("training", "save_state_minutes", 5, set()),  # how, not what, a model trains
    ("training", "deterministic", False, set()),
    ("deeprecon", "pretrain_splits", ["train"], {"train_stylegan2", "train_encoder"}),
    ("dmcvr", "steps", 11, {"train_diffusion"}),
    ("segmentation", "lr", 0.003, {"train_seg"}),
    ("deeprecon", "gan_steps", 21, {"train_stylegan2"}),
    ("deeprecon", "encoder_lr", 0.002, {"train_encoder"}),
    ("gemini_gan", "steps", 5, {"train_gemini"}),
    ("mae", "robustness", {"pairs": 2}, set()),
    ("mae", "pretrain", {"steps": 4, "batch_size": 2, "lr": 0.001, "weight_decay": 0.05}, {"train_mae", "finetune_mae"}),
])
def test_an_inference_setting_never_retrains_a_model(tiny_run, tmp_path, section, key, value, retrains):
    """...and a training setting does retrain its model. (The Seg and W+SegNet trained on
    G(w*) learn from the inverted codes, so an inversion setting retrains them; the networks
    the inversion and decoding use are not retrained.)"""
    cfg = yaml.safe_load((tiny_run / "tiny.yaml").read_text())
    cfg.setdefault(section, {})[key] = value
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(cfg))
    dry = snakemake(tiny_run, "--configfile", str(tmp_path / "changed.yaml"), "-n")
    assert dry.returncode == 0, dry.stderr[-2000:]
    planned = set(job_counts(dry.stdout + dry.stderr)) if "Job stats" in dry.stdout + dry.stderr else set()
    if retrains:  # a training key retrains its model (and the models trained from it)
        assert retrains <= planned, planned
    else:
        assert not planned & TRAININGS, planned


def test_generative_models_pretrain_on_every_non_test_subject_and_no_test_subject_trains(tiny_run):
    """G, E and the diffusion autoencoders pre-train on the train and val splits (labelled or
    not: the val subject is in no labelled training set); no test subject enters any training
    set; a finished training leaves no side state or slice cache behind."""
    results = tiny_run / "results"
    sheet = pd.read_csv(results / "synthetic/subjects.tsv", sep="\t", dtype=str).set_index("subject")
    test = set(sheet.index[sheet["split"] == "test"])
    non_test = set(sheet.index) - test
    for log in ["train_stylegan2.log", "train_encoder.log", "train_diffusion/dmcvr.log", "train_diffusion/diffae.log",
                "train_mae/pretrained.log"]:
        line = next(l for l in (results / "logs" / log).read_text().splitlines() if "pre-training subjects" in l)
        assert set(line.split(": ", 2)[-1].split()) == non_test, (log, line)
    line = next(l for l in (results / "logs/train_gemini/gemini_gan.log").read_text().splitlines()
                if "training subjects" in l)
    assert set(line.split(": ", 2)[-1].split()) == non_test, line  # with their 3D truth
    for line in (results / "logs/train_seg/tiny.log").read_text().splitlines():
        if "training subjects" in line or "validation subjects" in line:
            assert not set(line.split(": ", 2)[-1].split()) & test, line
    assert not list(results.rglob(".*.training-state.pt")) and not list(results.rglob(".*.training-data"))


def test_the_read_audit_finds_an_undeclared_read(tmp_path):
    """The check above can fail: directseg declares only seg, which declares align, but it
    reads the synthetic truth, which no manifest it reaches covers."""
    results, audits = tmp_path / "results", tmp_path / "reads"
    stages = {"synth": ([], "synthetic/S1/truth/label_ed.nii.gz"), "align": ([], "aligned/S1/label_sa.nii.gz"),
              "seg": (["shards/align/b0000.tsv"], "seg/S1/seg_sa.nii.gz")}
    for stage, (inputs, output) in stages.items():
        (results / "shards" / stage).mkdir(parents=True)
        (results / "shards" / stage / "b0000.journal").write_text(json.dumps({"subject": "S1", "outputs": [output]}))
        audits.mkdir(exist_ok=True)
        (audits / f"{stage}.json").write_text(json.dumps({"manifest": f"shards/{stage}/b0000.tsv", "inputs": inputs,
                                                          "reads": []}))
    (audits / "directseg.json").write_text(json.dumps({
        "manifest": "shards/directseg/b0000.tsv", "inputs": ["shards/seg/b0000.tsv"],
        "reads": ["seg/S1/seg_sa.nii.gz", "aligned/S1/label_sa.nii.gz", "synthetic/S1/truth/label_ed.nii.gz"]}))
    assert uncovered_reads(results, audits) == [
        "shards/directseg/b0000.tsv read synthetic/S1/truth/label_ed.nii.gz (made by shards/synth/b0000.tsv)"]


def test_tiny_synthetic_cohort_end_to_end(tiny_run):
    tmp_path = tiny_run
    cfg = yaml.safe_load((tmp_path / "tiny.yaml").read_text())
    results = tmp_path / "results"
    table = pd.read_csv(results / "tables/centring.tsv", sep="\t")
    assert len(table) == 3 and (table["centring_error_inplane_mm"] < 10).all()  # the labelled subjects
    crop = nib.load(results / "crop/SYN0000/sa.nii.gz")
    assert crop.shape[:2] == (64, 64) and crop.shape[3] == 12
    assert (results / "logs/crop/b0000.log").read_text().strip().endswith("done")
    status = pd.read_csv(results / "tables/subject_status.tsv", sep="\t")
    assert list(status["status"]) == ["ok"] * 5  # SYN0004: the second domain's subject
    # every subject, labelled or not, has a row per method in the cohort table
    cohort = pd.read_parquet(results / "tables/cohort_phenotypes.parquet")
    generative = {"deeprecon_no", "deeprecon_5", "dmcvr", "diffae"}
    assert len(cohort) == 5 * 9 and set(cohort["method"]) == {"seg", "nn", "linear", "sdf", "cpd"} | generative
    assert (cohort["status"] == "ok").all() and cohort["LVEDV"].notna().all()
    assert list(cohort.loc[cohort["method"] == "seg", "has_labels"]) == [True, True, True, False, False]
    truth_es = [json.loads((results / f"synthetic/{s}/truth/phenotypes.json").read_text())["es_frame"]
                for s in ("SYN0000", "SYN0001", "SYN0002", "SYN0003")]
    assert (cohort.loc[cohort["method"] == "seg", "es_frame"] > 0).all() and max(truth_es) < 12
    assert not (results / "synthetic/SYN0003/label_sa.nii.gz").exists()
    agreement = pd.read_csv(results / "tables/cohort_agreement.csv")
    assert {"unlabelled", "labelled", "all"} <= set(agreement["group"])
    # Table 2 scores LVC on LAX views with LV labels only (SYN0001); SYN0002's are atria-only
    lax_rows = pd.concat([pd.read_parquet(p) for p in (results / "eval/lax/nn").glob("*.parquet")])
    assert set(lax_rows["subject"]) == {"SYN0001"}
    # the papers' Table 2 shape: rows methods, columns average, 2ch, 3ch, 4ch
    lax = pd.read_csv(results / "tables/lax_dice_LVC.csv")
    assert list(lax.columns) == ["method", "protocol", "average", "2ch", "3ch", "4ch"]
    whole = pd.read_csv(results / "tables/lax_dice_whole_LVC.csv")
    assert set(lax["protocol"]) == {"covered"} and set(whole["protocol"]) == {"whole"}
    assert list(lax["method"]) == ["nn", "linear", "sdf", "cpd", "deeprecon_no", "deeprecon_5", "dmcvr", "diffae",
                                   "gemini_gan"]
    truth = pd.read_parquet(results / "tables/truth_metrics_numeric.parquet")
    lvc = truth[(truth["structure"] == "LVC") & (truth["metric"] == "dice")]
    assert (lvc["n"] == 4).all()  # 2 subjects x ED/ES
    # (the DeepRecon rows come from a GAN trained for seconds: present, not accurate)
    assert (lvc.loc[lvc["method"].isin(["nn", "linear", "sdf", "cpd"]), "mean"] > 0.8).all()
    assert (results / "figures/lax_overlay_cpd.png").stat().st_size > 10_000
    assert (results / "models/seg/tiny/loss_curve.png").exists()
    seg = pd.read_parquet(results / "tables/seg_metrics_numeric.parquet")
    assert set(seg["method"]) == {"directseg", "wplus_segnet"} | generative
    assert set(seg["metric"]) == {"dice", "voe", "hd", "hd95", "asd", "assd"}  # DMCVR's Table 1 has them all
    quality = pd.read_csv(results / "tables/image_quality.csv")
    assert set(quality["method"]) == generative and (quality["psnr_mean"] > 0).all()
    heldout = pd.read_csv(results / "tables/heldout_slices.csv")
    assert set(heldout["method"]) == {"linear"} | generative and (heldout["slices"] > 0).all()
    assert len(set(heldout["slices"])) == 1  # every method judged on the same slices
    assert (results / "models/deeprecon/tiny/samples.png").exists()
    assert (results / "models/dmcvr/tiny/round_trip.png").exists()
    # Gemini-GAN: its volumes on the high-resolution grid, Tables 2 and 3 against the 3D truth
    recon = nib.load(results / "recon/gemini_gan/SYN0001/label_ed.nii.gz")
    assert np.allclose(np.linalg.norm(recon.affine[:3, :3], axis=0)[2], 2.0) and recon.shape[:2] == (64, 64)
    sr = pd.read_csv(results / "tables/super_resolution.csv")
    assert list(sr["method"]) == ["nn", "linear", "unet_seg", "unet_image", "gemini_gan"]
    assert (sr["subjects"] == 2).all()  # the target domain's test subjects, labelled or not
    assert sr.loc[sr["method"] == "unet_seg", "PSNR ED"].isna().all()  # n/a: no images
    da = pd.read_csv(results / "tables/domain_adaptation.csv")
    assert list(da["method"]) == ["no_adaptation", "vama"] and (da["subjects"] == 1).all()
    # the whole-heart MAE: Table 1 on the target test subjects (truth for all), Table 2 on the
    # labelled one (SAX from both methods; atria from the MAE only), robustness per plane count
    mae = pd.read_csv(results / "tables/mae_phenotypes.csv")
    assert list(mae["method"]) == ["mean_guess", "resnet", "mae"] and (mae["subjects"] == 2).all()
    assert mae.notna().all().all() and set(mae["reference"]) == {"truth"}
    seg_mae = pd.read_csv(results / "tables/mae_segmentation.csv").set_index("structure")
    assert list(seg_mae.index) == ["LVC", "LVM", "RVC", "LA", "RA"]
    assert (seg_mae["mae subjects"] == 1).all() and seg_mae.loc[["LA", "RA"], "directseg subjects"].eq(0).all()
    robust = pd.read_csv(results / "tables/mae_robustness.csv")
    assert list(robust["planes removed"]) == ["1", "2", "other subjects"] and list(robust["cases"]) == [18, 2, 1]
    curves = pd.read_csv(results / "motion/SYN0001_to_SYN0002/curves.tsv", sep="\t")
    assert len(curves) == 3 and {"source_ml", "target_ml", "adapted_ml"} <= set(curves.columns)  # 12 frames / 4
    # the run record and the QC pictures (the report's Run and Quality control categories)
    configuration = pd.read_csv(results / "report/configuration.tsv", sep="\t", dtype=str)
    assert dict(zip(configuration["key"], configuration["value"]))["mae.model.patch_t"] == "2"
    models = pd.read_csv(results / "report/models.tsv", sep="\t").set_index("model")
    assert {"seg", "dmcvr", "gemini_gan", "mae_pretrained"} <= set(models.index)
    assert models.loc["seg", "sha256"] == hashlib.sha256((results / "models/seg/tiny/model.pt").read_bytes()).hexdigest()
    qc_subjects = 2  # evaluation.qc_subjects of the demo preset (tiny.yaml leaves it)
    assert len(list((results / "report/qc").glob("SYN*.png"))) == qc_subjects
    outliers = pd.read_csv(results / "report/qc/outliers.tsv", sep="\t")
    assert list(outliers.columns) == ["quantity", "subject", "value", "why"]
    # a finished run has nothing left to do
    dry = snakemake(tmp_path, "--configfile", str(tmp_path / "tiny.yaml"), "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    # a new checkpoint reruns inference and what depends on it, and nothing else
    # (Snakemake compares checksums, so the weights really change, not just the mtime)
    checkpoint = results / "models/seg/tiny/model.pt"
    model = load_checkpoint(checkpoint)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    save_checkpoint(model, model.config, checkpoint)
    dry = snakemake(tmp_path, "--configfile", str(tmp_path / "tiny.yaml"), "-n")
    # (DeepRecon's encoder and inversion use the U-Net's features as perceptual distance)
    # (DMCVR's z_mor is the U-Net's bottleneck, and both diffusion methods are segmented by it;
    # DiffAE's training and the linear held-out slices do not depend on it)
    latent = {"train_encoder": 1, "invert": 1, "train_seg_latent": 2, "recon_latent": 1,
              "train_wplus_segnet": 1, "wplus_segnet_rows": 1, "motion_adaptation": 1,
              "train_diffusion": 1, "recon_diffusion": 2, "evaluate": 5, "shard_evaluated": 1, "lax_overlay": 5}
    # (Gemini-GAN reads the segmentation for unlabelled subjects' ED/ES and the nn/linear rows,
    # V-AMA for the landmarks of unlabelled subjects; Gemini-GAN's training does not)
    latent.update({"recon_gemini": 1, "train_vama": 1, "adapt_gemini": 1, "superres_tables": 1})
    # (the MAE's inputs take unlabelled subjects' LV base, and the DirectSeg row, from it)
    latent.update({"mae_inputs": 1, "train_mae": 1, "finetune_mae": 3, "mae_evaluate": 1, "mae_tables": 1})
    cohort_jobs = {"seg_record": 1, "cohort_recon": 4, "cohort_generative": 4, "cohort_phenotypes": 1}
    # (the run record hashes the new weights; every QC picture draws the new segmentation)
    report_jobs = {"run_record": 1, "qc_subject": qc_subjects, "qc_overview": 1}
    assert job_counts(dry.stdout + dry.stderr) == {"seg": 1, "eval_directseg": 1, "report": 1,
                                                   "subject_status": 1, "all": 1, **latent, **cohort_jobs,
                                                   **report_jobs}
    # pre-trained mode: an existing checkpoint replaces training
    cfg["segmentation"]["checkpoint"] = str(results / "models/seg/tiny/model.pt")
    cfg["results"] = str(tmp_path / "results_pretrained")
    (tmp_path / "pretrained.yaml").write_text(yaml.safe_dump(cfg))
    dry = snakemake(tmp_path, "--configfile", str(tmp_path / "pretrained.yaml"), "-n")
    jobs = job_counts(dry.stdout + dry.stderr)
    assert "train_seg" not in jobs and jobs["seg"] == 1


def test_bad_subject_fails_alone_and_changed_input_reruns_its_shard_only(tmp_path, synth_subject):
    root = tmp_path / "ukbb"
    for subject in ("1000001", "1000002", "1000003"):
        folder = root / subject
        folder.mkdir(parents=True)
        for view in VIEWS:
            shutil.copy(synth_subject[view], folder / f"{view}.nii.gz")
            shutil.copy(synth_subject[f"label_{view}"], folder / f"label_{view}.nii.gz")
    bad = root / "1000002" / "la_4ch.nii.gz"
    img = nib.load(bad)
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.int16), img.affine), bad)
    sheet = pd.DataFrame({"subject": ["1000001", "1000002", "1000003"],
                          "split": ["train", "val", "test"], "has_labels": [True, True, False]})
    sheet.to_csv(tmp_path / "subjects.tsv", sep="\t", index=False)
    cfg = {"results": str(tmp_path / "results"),
           "cohort": {"kind": "nifti", "nifti": {"root": str(root), "sheet": str(tmp_path / "subjects.tsv"),
                                                 "lax_labels": "full"}},  # the synthetic files' LAX values
           "batch": {"subjects_per_shard": 2},  # the bad subject shares its shard with a good one
           "segmentation": {"enabled": False},
           "crop": {"sax_size": [64, 64], "lax_size": [64, 64]}}
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run = snakemake(tmp_path, "--configfile", str(config))
    assert run.returncode == 0, run.stderr[-3000:]
    results = tmp_path / "results"
    assert (results / "crop/1000001/centring.json").exists()
    assert (results / "aligned/1000001/label_sa.nii.gz").exists()
    assert (results / "crop/1000003/crop.json").exists()
    assert not (results / "crop/1000003/centring.json").exists()  # no labels for this one
    assert not any((results / "nifti/1000002").glob("*"))
    status = pd.read_csv(results / "tables/subject_status.tsv", sep="\t", dtype=str).set_index("subject")
    assert list(status["status"]) == ["ok", "failed", "ok"]
    reason = status.loc["1000002", "reason"]
    assert status.loc["1000002", "stage"] == "ingest"
    assert "1000002" in reason and "la_4ch.nii.gz" in reason and "all zeros" in reason
    assert "all zeros" in (results / "logs/ingest/b0000.log").read_text()
    assert "Nothing to be done" in "".join(snakemake(tmp_path, "--configfile", str(config), "-n").stdout)
    # a changed input file reruns its own shard's chain and the cohort status, nothing else
    changed = root / "1000003" / "sa.nii.gz"
    changed.write_bytes(changed.read_bytes())
    dry = snakemake(tmp_path, "--configfile", str(config), "-n")
    assert job_counts(dry.stdout + dry.stderr) == {"ingest": 1, "crop": 1, "align": 1,
                                                   "subject_status": 1, "all": 1,
                                                   "qc_subject": 1, "qc_overview": 1}  # its QC picture
    assert "shards/ingest/b0001.tsv" in dry.stdout


def test_overlapping_splits_are_refused(tmp_path):
    sheet = pd.DataFrame({"subject": ["A1", "A1"], "split": ["train", "test"]})
    sheet.to_csv(tmp_path / "subjects.tsv", sep="\t", index=False)
    cfg = {"results": str(tmp_path / "results"),
           "cohort": {"kind": "nifti", "nifti": {"root": str(tmp_path), "sheet": str(tmp_path / "subjects.tsv")}},
           "crop": {"sax_size": [64, 64], "lax_size": [64, 64]}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    run = snakemake(tmp_path, "--configfile", str(tmp_path / "cfg.yaml"), "-n")
    assert run.returncode != 0
    assert "splits must not overlap" in run.stdout + run.stderr


def test_ukbb_dicom_cohort_truncated_zip_fails_alone_and_nothing_identifying_leaks(tmp_path, synth_subject):
    import pydicom

    from cinerecon.synth.dicom import write_ukbb_zips

    root = tmp_path / "bulk"
    eids = ["1000001", "1000002", "1000003"]
    for i, eid in enumerate(eids):
        write_ukbb_zips(synth_subject["sa"].parent, eid, root, {"sax_layout": "mixed" if i else "separate"}, seed=i)
    sax_zip = root / "1000002_20209_2_0.zip"
    sax_zip.write_bytes(sax_zip.read_bytes()[: sax_zip.stat().st_size // 2])
    with __import__("zipfile").ZipFile(root / "1000001_20208_2_0.zip") as z:
        name = next(n for n in z.namelist() if not n.startswith("manifest"))
        ds = pydicom.dcmread(__import__("io").BytesIO(z.read(name)))
    patient = [str(ds.PatientName), str(ds.PatientID), str(ds.PatientBirthDate)]
    pd.DataFrame({"subject": eids, "split": ["train", "val", "test"]}).to_csv(
        tmp_path / "subjects.tsv", sep="\t", index=False)
    cfg = {"results": str(tmp_path / "results"),
           "cohort": {"kind": "ukbb_dicom", "ukbb_dicom": {"root": str(root), "sheet": str(tmp_path / "subjects.tsv")}},
           "segmentation": {"enabled": False},
           "crop": {"sax_size": [64, 64], "lax_size": [64, 64]}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    run = snakemake(tmp_path, "--configfile", str(tmp_path / "cfg.yaml"))
    assert run.returncode == 0, run.stderr[-3000:]
    results = tmp_path / "results"
    status = pd.read_csv(results / "tables/subject_status.tsv", sep="\t", dtype=str).set_index("subject")
    assert list(status["status"]) == ["ok", "failed", "ok"]
    assert status.loc["1000002", "stage"] == "ingest"
    assert "1000002_20209_2_0.zip" in status.loc["1000002", "reason"]
    for eid in ("1000001", "1000003"):
        ref = nib.load(synth_subject["sa"])
        got = nib.load(results / "aligned" / eid / "sa.nii.gz")
        assert got.shape[2:] == ref.shape[2:]
        assert (results / "nifti" / eid / "meta.json").exists()
    assert not any((results / "nifti/1000002").glob("*"))
    text = "".join(p.read_text(errors="ignore") for p in results.rglob("*") if p.suffix in (".json", ".log", ".tsv"))
    assert not any(value in text for value in patient)


def test_fixing_labels_after_an_interrupted_run_changes_that_subjects_directseg_rows(tmp_path, synth_subject):
    """A NIfTI cohort run is killed after alignment and resumed; then one test subject's SAX
    labels are corrected: its DirectSeg rows change (they read the aligned labels, a declared
    input), and the other subjects are not recomputed inside the shard jobs."""
    import os
    import signal
    import time

    root = tmp_path / "ukbb"
    subjects = ["2000001", "2000002", "2000003"]
    for subject in subjects:
        folder = root / subject
        folder.mkdir(parents=True)
        for view in VIEWS:
            shutil.copy(synth_subject[view], folder / f"{view}.nii.gz")
            shutil.copy(synth_subject[f"label_{view}"], folder / f"label_{view}.nii.gz")
    pd.DataFrame({"subject": subjects, "split": ["train", "val", "test"], "has_labels": ["yes"] * 3}).to_csv(
        tmp_path / "subjects.tsv", sep="\t", index=False)
    cfg = {"results": str(tmp_path / "results"),
           "cohort": {"kind": "nifti", "nifti": {"root": str(root), "sheet": str(tmp_path / "subjects.tsv"),
                                                 "lax_labels": "full"}},
           "segmentation": {"epochs": 4, "batch_size": 8, "lr": 0.001, "frames": "ed_es"},
           "deeprecon": {"enabled": False}, "dmcvr": {"enabled": False},
           "mae": TINY_MAE,  # a real cohort's MAE: targets from the labels (atria by area-length)
           "recon": {"baselines": ["nn"]},
           "crop": {"sax_size": [64, 64], "lax_size": [64, 64]}}
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(cfg))
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(config), "--cores", "1", "--max-threads", "1"]
    job = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and job.poll() is None and not (results / "shards/align/b0000.tsv").exists():
            time.sleep(0.05)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    assert snakemake(tmp_path, "--configfile", str(config), "--unlock").returncode == 0
    run = snakemake(tmp_path, "--configfile", str(config), "--rerun-incomplete")
    assert run.returncode == 0, run.stderr[-3000:]
    rows = results / "eval/sax/directseg/2000003.parquet"
    before = pd.read_parquet(rows)
    mae = pd.read_csv(results / "tables/mae_phenotypes.csv")
    assert set(mae["reference"]) == {"labels"} and mae.notna().all().all()  # every target, the atria's too
    # correct the test subject's labels: its RV was mislabelled as background at ED and ES
    path = root / "2000003/label_sa.nii.gz"
    img = nib.load(path)
    labels = np.asarray(img.dataobj).copy()
    labels[labels == 3] = 0
    nib.save(nib.Nifti1Image(labels, img.affine, img.header), path)
    run = snakemake(tmp_path, "--configfile", str(config))
    assert run.returncode == 0, run.stderr[-3000:]
    after = pd.read_parquet(rows)
    rvc = lambda t: t.loc[t["structure"] == "RVC", "dice"].tolist()  # noqa: E731
    assert max(rvc(before)) > 0  # the network finds the RV the old labels had
    assert rvc(after) != rvc(before)
    assert after.loc[after["structure"] == "LVC", "dice"].tolist() == before.loc[before["structure"] == "LVC", "dice"].tolist()
    # the shard jobs reran, but inside them only the corrected subject was recomputed
    log = (results / "logs/align/b0000.log").read_text()
    assert "subject 2000001 (1/3): unchanged" in log and "subject 2000002 (2/3): unchanged" in log
    assert "subject 2000003 (3/3): unchanged" not in log


# ---- Snakemake's report, opened in Debian's headless Chromium (.ci/browser.sh installs it) ---
def chromium_driver():
    """A headless Chromium under selenium; skipped where Chromium is absent, except in CI."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        message = "Chromium and ChromeDriver are needed (Debian: apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message + "; .ci/browser.sh installs them")
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium  # no download: the browser and driver on this machine
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


def screenshot_is_drawn(path: Path) -> bool:
    """Not blank: a real spread of grey levels and a good share of non-white pixels."""
    import matplotlib.image

    grey = matplotlib.image.imread(str(path))[..., :3].mean(axis=2)
    return grey.std() > 0.05 and (grey < 0.9).mean() > 0.05


def test_the_report_renders_in_a_browser(tiny_run, tmp_path):
    """snakemake --report (HTML and zip) over the tiny run; Chromium shows the workflow page,
    every category, a table's caption (subjects and models named) and the table itself, and
    a QC picture. Screenshots: $CINERECON_REPORT_SHOTS if set, else the test's tmp_path."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    html, zipped = tmp_path / "report.html", tmp_path / "report.zip"
    for target in (html, zipped):
        run = snakemake(tiny_run, "--configfile", str(tiny_run / "tiny.yaml"), "--report", str(target))
        assert run.returncode == 0, run.stderr[-3000:]
    with zipfile.ZipFile(zipped) as z:
        names = z.namelist()
    assert any(n.endswith("report.html") for n in names)
    assert any(n.endswith("lax_dice_LVC.html") for n in names), names[:20]

    shots = Path(os.environ.get("CINERECON_REPORT_SHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    browser = chromium_driver()
    wait = WebDriverWait(browser, 60)

    def page_text():
        return browser.find_element(By.TAG_NAME, "body").text

    def open_entry(text):
        wait.until(lambda b: b.find_elements(By.XPATH, f"//nav//*[text()='{text}']"))
        browser.find_element(By.XPATH, f"//nav//*[text()='{text}']").click()

    try:
        browser.get(html.as_uri())
        wait.until(lambda b: "Paper tables" in page_text())
        home = page_text()
        for expected in ("cinerecon: cine MRI to 3D reconstructions", "preset demo, cohort synthetic",
                         "Cohort", "Figures", "Paper tables", "Quality control", "Run"):
            assert expected in home, expected
        browser.save_screenshot(str(shots / "report_home.png"))
        assert screenshot_is_drawn(shots / "report_home.png")

        # a paper table: its caption names the protocol, the subjects and the checkpoints...
        open_entry("Paper tables")
        open_entry("LAX-intersection Dice")
        wait.until(lambda b: "lax_dice_whole_LVC" in page_text())
        row = browser.find_element(By.XPATH, "//nav//td[text()='lax_dice_LVC']/ancestor::tr[1]")
        row.find_elements(By.TAG_NAME, "a")[-1].click()  # (i): the result's caption
        wait.until(lambda b: "DESCRIPTION" in page_text())
        caption = page_text()
        assert "Covered protocol" in caption and "SYN0001" in caption, caption[-2000:]
        assert "seg = " in caption and "models/seg/tiny/model.pt" in caption
        browser.save_screenshot(str(shots / "report_caption.png"))
        # ...and the table itself renders (an HTML table in the content frame)
        open_entry("LAX-intersection Dice")  # back, through the breadcrumbs
        row = browser.find_element(By.XPATH, "//nav//td[text()='lax_dice_LVC']/ancestor::tr[1]")
        row.find_elements(By.TAG_NAME, "a")[-2].click()  # (eye): the table
        wait.until(lambda b: b.find_elements(By.TAG_NAME, "iframe"))
        browser.switch_to.frame(browser.find_element(By.TAG_NAME, "iframe"))
        wait.until(lambda b: b.find_elements(By.TAG_NAME, "table"))
        table = browser.find_element(By.TAG_NAME, "table").text
        assert "method" in table and "linear" in table and "covered" in table, table[:500]
        browser.switch_to.default_content()
        browser.save_screenshot(str(shots / "report_table.png"))
        assert screenshot_is_drawn(shots / "report_table.png")

        # the run record and a QC picture are reachable
        browser.get(html.as_uri())
        open_entry("Run")
        wait.until(lambda b: "models.tsv" in page_text() or "configuration.tsv" in page_text())
        browser.get(html.as_uri())
        open_entry("Quality control")
        open_entry("Subjects")
        wait.until(lambda b: b.find_elements(By.XPATH, "//nav//td[starts-with(text(), 'SYN')]"))
        subject_row = browser.find_element(By.XPATH, "//nav//td[starts-with(text(), 'SYN')]/ancestor::tr[1]")
        subject_row.find_elements(By.TAG_NAME, "a")[-2].click()
        wait.until(lambda b: b.find_elements(By.XPATH, "//img[starts-with(@src, 'data:image/png')]"))
        browser.save_screenshot(str(shots / "report_qc.png"))
        assert screenshot_is_drawn(shots / "report_qc.png")
    finally:
        browser.quit()
