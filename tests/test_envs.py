"""envs/*.yaml for --software-deployment-method conda (issue #22): dependencies only (no
`-e ..`, which points into .snakemake/ once Snakemake copies an env file), every runtime
dependency of pyproject.toml in both, the CPU and GPU environments differing in the PyTorch
build, and jobs importing cinerecon from the checkout through PYTHONPATH."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from cinerecon.workflow import job_pythonpath, put_checkout_on_pythonpath

REPO = Path(__file__).resolve().parents[1]
# pip name -> conda-forge name, where they differ
CONDA_NAMES = {"torch": "pytorch", "matplotlib": "matplotlib-base"}
# what runs the workflow, not its jobs
NOT_IN_JOBS = {"snakemake", "snakemake-executor-plugin-slurm"}


def name_of(spec: str) -> str:
    return re.split(r"[<>=!~ \[]", spec.strip(), maxsplit=1)[0].lower()


def env_packages(path: Path) -> tuple[dict[str, str], list[str]]:
    """({conda package: spec}, [pip specs]) of an environment file."""
    env = yaml.safe_load(path.read_text())
    conda, pip = {}, []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip += dep["pip"]
        else:
            conda[name_of(dep)] = dep
    return conda, pip


def test_envs_hold_dependencies_only_and_every_runtime_dependency():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    needed = {CONDA_NAMES.get(name_of(d), name_of(d)) for d in project["dependencies"]} - NOT_IN_JOBS
    for env in ("cpu", "gpu"):
        conda, pip = env_packages(REPO / "envs" / f"{env}.yaml")
        local = [s for s in pip if s.startswith(("-e", ".", "/", "file:")) or "://" in s]
        assert not local, f"{env}.yaml installs from a path: {local}"
        missing = needed - set(conda) - {name_of(s) for s in pip}
        assert not missing, f"{env}.yaml lacks {sorted(missing)}"


def test_cpu_and_gpu_envs_differ_in_the_pytorch_build():
    cpu, _ = env_packages(REPO / "envs/cpu.yaml")
    gpu, _ = env_packages(REPO / "envs/gpu.yaml")
    assert cpu["pytorch"].endswith("=cpu*") and gpu["pytorch"].endswith("=cuda*")
    assert "cuda-version" in gpu and "cuda-version" not in cpu
    assert set(cpu) ^ set(gpu) == {"cuda-version"}


def test_a_bare_python_imports_cinerecon_from_the_jobs_pythonpath(tmp_path):
    """A venv without cinerecon (as a conda env) imports it from the checkout via PYTHONPATH."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    python = tmp_path / "venv/bin/python"
    code = "import cinerecon; print(cinerecon.__file__)"
    bare = subprocess.run([str(python), "-c", code], capture_output=True, text=True, env={}, cwd=tmp_path)
    assert bare.returncode != 0  # really bare
    env = {"PYTHONPATH": job_pythonpath(REPO, "/elsewhere")}
    found = subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()).resolve() == REPO / "cinerecon/__init__.py"
    assert job_pythonpath(REPO, f"/elsewhere:{REPO}:") == f"{REPO}:/elsewhere"


def test_the_snakefile_puts_the_checkout_on_every_jobs_pythonpath():
    assert re.search(r"^put_checkout_on_pythonpath\(workflow\.basedir\)$", (REPO / "Snakefile").read_text(), re.M)


def test_put_checkout_on_pythonpath_keeps_what_was_there(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    assert put_checkout_on_pythonpath(REPO) == f"{REPO}:/elsewhere"
