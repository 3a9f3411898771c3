"""CPU threads of the jobs (issue #16): every rule declares `threads` (rules/common.smk's
constants), GPU-tagged rules get enough CPUs to feed the GPU, and every job's script bounds
torch, BLAS and OpenMP to its threads through cinerecon.workflow.use_threads."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cinerecon import workflow
from cinerecon.workflow import THREAD_ENV_VARS, job_threads, use_threads, workers_for

REPO = Path(__file__).resolve().parents[1]
RULE = re.compile(r"^(\s*)rule (\w+):\s*$")


def rule_blocks() -> dict[str, str]:
    """{rule name: the text of its block} of every rule in rules/*.smk."""
    blocks = {}
    for path in sorted((REPO / "rules").glob("*.smk")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            m = RULE.match(line)
            if not m:
                continue
            indent, body = len(m.group(1)), []
            for other in lines[i + 1:]:
                if other.strip() and len(other) - len(other.lstrip()) <= indent:
                    break
                body.append(other)
            blocks[m.group(2)] = "\n".join(body)
    return blocks


def thread_constants() -> dict[str, int]:
    """{name: threads} of common.smk's constants; GPU_THREADS as on a machine with a GPU."""
    text = (REPO / "rules/common.smk").read_text()
    constants = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+_THREADS) = (\d+)", text, re.M)}
    if re.search(r"^GPU_THREADS, \w+ = gpu_plan\(", text, re.M):
        constants["GPU_THREADS"] = workflow.GPU_JOB_THREADS
    return constants


@pytest.fixture
def restored_threads(monkeypatch):
    """Undo what use_threads does to this (pytest's) process."""
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    for var in THREAD_ENV_VARS:  # monkeypatch puts back each variable as it was
        monkeypatch.setenv(var, os.environ.get(var, "1"))
    torch_before = torch.get_num_threads()
    pools_before = {p["prefix"]: p["num_threads"] for p in threadpool_info()}
    yield
    torch.set_num_threads(torch_before)
    threadpool_limits(pools_before)
    workflow._THREADS.clear()


def test_use_threads_sets_torch_blas_openmp_and_the_environment(restored_threads):
    import torch
    from threadpoolctl import threadpool_info

    record = use_threads(3)
    assert torch.get_num_threads() == 3
    pools = threadpool_info()
    assert {p["user_api"] for p in pools} >= {"blas"}  # numpy's BLAS is loaded
    assert all(p["num_threads"] == 3 for p in pools), pools
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        assert os.environ[var] == "3"
    assert record["threads"] == 3 and record["torch"] == 3
    assert set(record["pools"].values()) == {3}
    assert job_threads() == 3
    assert workers_for() == 2 and workers_for(8) == 7 and workers_for(1) == 0


def test_use_threads_reaches_subprocesses_and_torch_imported_later(restored_threads):
    """A fresh process as a job's script is: torch imported after use_threads takes its
    threads from the environment (1 here: torch never takes more than the CPUs by default);
    the inter-op pool is set where torch still allows it."""
    code = ("import os, subprocess, sys\n"
            "from cinerecon.workflow import use_threads\n"
            "use_threads(1)\n"
            "import torch\n"
            "child = subprocess.run([sys.executable, '-c', 'import os; print(os.environ[\"OMP_NUM_THREADS\"])'],\n"
            "                       capture_output=True, text=True).stdout.strip()\n"
            "print(torch.get_num_threads(), child)\n"
            "record = use_threads(2)\n"
            "print(record['torch'], record['torch_interop'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1", "2", "2"]


def test_logged_writes_the_threads_to_the_job_log(tmp_path, restored_threads):
    use_threads(2)
    with workflow.logged(tmp_path / "job.log", "step"):
        pass
    assert re.search(r"threads: 2 \(torch intra-op 2, ", (tmp_path / "job.log").read_text())


def test_every_rule_declares_threads_from_the_named_constants():
    blocks, constants = rule_blocks(), thread_constants()
    assert {"TABLE_THREADS", "CPU_STAGE_THREADS", "GPU_THREADS"} <= set(constants)
    assert len(blocks) >= 30
    for name, body in blocks.items():
        m = re.search(r"^\s*threads:\s*(\S+)\s*$", body, re.M)
        assert m, f"rule {name} declares no threads"
        assert m.group(1) in constants, f"rule {name}: threads {m.group(1)} is not one of {sorted(constants)}"
        if re.search(r"\bgpu=1\b", body):
            assert m.group(1) == "GPU_THREADS", f"GPU-tagged rule {name} has threads {m.group(1)}"
    assert constants["GPU_THREADS"] >= 4


def test_every_workflow_script_passes_the_jobs_threads():
    scripts = sorted((REPO / "workflow_scripts").glob("*.py"))
    missing = [p.name for p in scripts if not re.search(r"^use_threads\(snakemake\.threads\)$", p.read_text(), re.M)]
    assert scripts and not missing, f"scripts that do not call use_threads(snakemake.threads): {missing}"


def snakemake(workdir: Path, *args, gpus: str | None = None):
    """Snakemake on the repository's Snakefile; gpus: its CUDA_VISIBLE_DEVICES (None: unset)."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), *args]
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpus
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)


def tiny_config(folder: Path, **cohort_synthetic) -> Path:
    cfg = yaml.safe_load((REPO / "tests/data/tiny.yaml").read_text())
    cfg["results"] = str(folder / "results")
    cfg["cohort"]["synthetic"].update(cohort_synthetic)
    path = folder / "cfg.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def dry_run_jobs(workdir: Path, config: Path, cores: int, gpus: str | None = "0") -> list[dict]:
    """[{rule, threads, resources}] of every job of a --forceall dry run (with one GPU visible
    unless gpus says otherwise)."""
    run = snakemake(workdir, "--configfile", str(config), "--cores", str(cores), "-n", "--forceall",
                    gpus=gpus)
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = []
    for line in run.stdout.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line)
        if m:
            jobs.append({"rule": m.group(1), "threads": 1, "resources": ""})
        elif jobs and line.startswith("    threads: "):
            jobs[-1]["threads"] = int(line.split()[-1])
        elif jobs and line.startswith("    resources: "):
            jobs[-1]["resources"] = line
    return jobs


@pytest.mark.workflow
def test_dry_run_gives_every_job_its_rules_threads(tmp_path):
    """Two dry runs (NIfTI and DICOM ingest) plan every rule: GPU-tagged jobs get
    GPU_THREADS, the others their constant; at --cores 2 Snakemake caps them all at 2."""
    constants, blocks = thread_constants(), rule_blocks()
    declared = {name: constants[re.search(r"threads:\s*(\w+)", body).group(1)] for name, body in blocks.items()}
    jobs = (dry_run_jobs(tmp_path / "nifti", tiny_config(tmp_path / "nifti"), 64)
            + dry_run_jobs(tmp_path / "dicom", tiny_config(tmp_path / "dicom", dicom={}), 64))
    assert {j["rule"] for j in jobs} - {"all"} == set(blocks)
    for job in jobs:
        if job["rule"] == "all":
            continue
        assert job["threads"] == declared[job["rule"]], job
        if "gpu=1" in job["resources"]:
            assert job["threads"] >= 4, job
    assert max(j["threads"] for j in dry_run_jobs(tmp_path / "nifti", tmp_path / "nifti/cfg.yaml", 2)) == 2
    # no GPU visible: GPU-tagged jobs are one-thread CPU jobs (side by side, not 2 cores each)
    cpu_only = dry_run_jobs(tmp_path / "nifti", tmp_path / "nifti/cfg.yaml", 64, gpus="")
    gpu_jobs = [j for j in cpu_only if "gpu=1" in j["resources"]]
    assert gpu_jobs and {j["threads"] for j in gpu_jobs} == {1}, gpu_jobs
    # training jobs ask a cluster for at most training.max_runtime_minutes (a partition's limit)
    trainings = [j for j in jobs if j["rule"].startswith("train_")]
    assert trainings and all("runtime=2880," in j["resources"] for j in trainings if "train_diffusion" in j["rule"])
    cfg = yaml.safe_load((tmp_path / "nifti/cfg.yaml").read_text())
    cfg["training"] = {"max_runtime_minutes": 100}
    (tmp_path / "nifti/capped.yaml").write_text(yaml.safe_dump(cfg))
    capped = [j for j in dry_run_jobs(tmp_path / "nifti", tmp_path / "nifti/capped.yaml", 2)
              if j["rule"].startswith("train_")]
    assert capped and all("runtime=100," in j["resources"] for j in capped), capped


@pytest.mark.workflow
def test_a_job_runs_with_its_threads(tmp_path):
    """A real (cheap) job: its log records the threads Snakemake gave it."""
    config = tiny_config(tmp_path)
    run = snakemake(tmp_path, "--configfile", str(config), "--cores", "2",
                    str(tmp_path / "results/synthetic/subjects.tsv"), "--set-threads", "synth_sheet=2")
    assert run.returncode == 0, run.stderr[-3000:]
    log = (tmp_path / "results/logs/synth_sheet.log").read_text()
    m = re.search(r"threads: (\d+) \(torch intra-op \S+, inter-op \S+; pools (.*)\)", log)
    assert m and m.group(1) == "2", log
    pools = dict(item.split("=") for item in m.group(2).split())
    assert pools and set(pools.values()) == {"2"}, log


def test_visible_gpus_reads_cuda_visible_devices_then_nvidia_smi(tmp_path):
    assert workflow.visible_gpus({"CUDA_VISIBLE_DEVICES": "0,1,3"}) == 3
    assert workflow.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == 0
    assert workflow.visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == 0
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: a)'\necho 'GPU 1: NVIDIA H200 (UUID: b)'\n")
    fake.chmod(0o755)
    assert workflow.visible_gpus({}, nvidia_smi=str(fake)) == 2
    broken = tmp_path / "broken-smi"
    broken.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    broken.chmod(0o755)
    assert workflow.visible_gpus({}, nvidia_smi=str(broken)) == 0
    assert workflow.visible_gpus({}, nvidia_smi=str(tmp_path / "absent")) == 0


def test_gpu_plan_follows_the_gpus_that_exist():
    full, cpu = workflow.GPU_JOB_THREADS, workflow.CPU_FALLBACK_THREADS
    assert workflow.gpu_plan(True, False, 0) == (cpu, None)  # CPU-only: no limit, one thread
    assert workflow.gpu_plan(True, False, 1) == (full, 1)
    assert workflow.gpu_plan(True, False, 4) == (full, 4)
    assert workflow.gpu_plan(True, True, 4) == (full, None)  # --resources gpu=N wins
    assert workflow.gpu_plan(False, False, 0) == (full, None)  # cluster: SLURM gives each its GPU
