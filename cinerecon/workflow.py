"""Helpers shared by the thin workflow scripts (logging, error reporting, CPU threads).

The library itself never reads `snakemake.*`; scripts pass plain values in.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

# Diagnostics: with CINERECON_AUDIT_READS=<folder>, every shard stage writes there the files
# of the results root its process has read since the previous stage of the same script (or
# since start: models loaded first count as the first stage's), with its declared inputs, so a
# test can check that each read is covered by a declared input or by a manifest chained to
# one (tests/test_workflow.py). Files read by native code (pyarrow's parquet) are not seen.
AUDIT_ENV = "CINERECON_AUDIT_READS"
_READS: set[str] = set()


def _record_reads(event: str, args: tuple) -> None:
    if event != "open" or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    mode, flags = args[1], args[2]
    writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & (os.O_WRONLY | os.O_RDWR))
    if not writing:
        _READS.add(os.path.abspath(os.fsdecode(args[0])))


if os.environ.get(AUDIT_ENV):
    sys.addaudithook(_record_reads)


def write_read_audit(folder, manifest, inputs) -> None:
    """One JSON record per shard stage: its manifest, declared inputs and the files of the
    results root read since the previous record (paths relative to the root)."""
    root = Path(manifest).absolute().parents[2]

    def rel(path):
        try:
            return str(Path(path).absolute().relative_to(root))
        except ValueError:
            return None

    record = {"manifest": rel(manifest), "inputs": sorted(filter(None, map(rel, inputs))),
              "reads": sorted(filter(None, map(rel, list(_READS))))}
    _READS.clear()
    name = record["manifest"].replace("/", "-").removesuffix(".tsv") + ".json"
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / name).write_text(json.dumps(record, indent=1))


# ---- the job's CPU threads ----------------------------------------------------------------
# Each rule declares `threads:` (rules/common.smk); every workflow script passes
# snakemake.threads to use_threads() first thing, which bounds every thread pool of the
# process to it. (Snakemake itself only exports OMP_NUM_THREADS & co. to a script's process;
# use_threads makes the limit explicit, applies it to pools already started, and logs it.)
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS",
                   "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
_THREADS: dict = {}


def use_threads(n) -> dict:
    """Run this process's compute on `n` threads (a job's `threads`, i.e. snakemake.threads):

    - OMP_NUM_THREADS, MKL_NUM_THREADS, OPENBLAS_NUM_THREADS (and GOTO, VECLIB, NUMEXPR) = n,
      for libraries loaded later and for any subprocess;
    - BLAS and OpenMP pools already loaded (numpy/scipy's OpenBLAS, torch's OpenMP) limited
      to n with threadpoolctl, when it is installed;
    - torch's intra-op threads = n (torch.set_num_threads) if torch is imported (if it is
      imported later, it reads OMP_NUM_THREADS), and its inter-op threads = n where that is
      still allowed (torch raises once inter-op work has started; then they are left as they are).

    Returns {"threads": n, **thread_state()}. `logged` writes the threads to the job's log.
    """
    n = max(1, int(n))
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(n)
    import numpy  # noqa: F401  (loads its BLAS, so that the limit below covers it)

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: the env vars still reach libraries loaded from now on
        pass
    else:
        threadpool_limits(n)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
        try:
            torch.set_num_interop_threads(n)
        except RuntimeError:  # inter-op work has started, or it was set before
            pass
    _THREADS.clear()
    _THREADS["threads"] = n
    return {"threads": n, **thread_state()}


def thread_state() -> dict:
    """The threads in effect now: torch's intra- and inter-op (None before torch is imported)
    and every BLAS/OpenMP pool loaded ({prefix: threads}; {} without threadpoolctl)."""
    state = {"torch": None, "torch_interop": None, "pools": {}}
    torch = sys.modules.get("torch")
    if torch is not None:
        state["torch"], state["torch_interop"] = torch.get_num_threads(), torch.get_num_interop_threads()
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return state
    state["pools"] = {pool["prefix"]: pool["num_threads"] for pool in threadpool_info()}
    return state


def job_threads() -> int:
    """The job's thread count: what use_threads() set, else OMP_NUM_THREADS (Snakemake exports
    it to every script job), else the CPUs this process may run on."""
    if _THREADS:
        return _THREADS["threads"]
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def workers_for(threads: int | None = None) -> int:
    """Data-loading worker processes for a job with `threads` CPUs (default: job_threads()):
    all but the one the main (training) process keeps; 0 = load in the main process."""
    threads = job_threads() if threads is None else int(threads)
    return max(0, threads - 1)


def job_pythonpath(repo, existing: str | None) -> str:
    """PYTHONPATH for every job: the workflow's checkout first (so a job imports the cinerecon
    of the rules it runs, also inside a conda environment that holds only the dependencies),
    then what was there, without duplicates."""
    parts = [str(repo), *(p for p in (existing or "").split(os.pathsep) if p)]
    return os.pathsep.join(dict.fromkeys(parts))


def put_checkout_on_pythonpath(repo) -> str:
    """Set this process's PYTHONPATH (inherited by every job it starts) to job_pythonpath."""
    os.environ["PYTHONPATH"] = job_pythonpath(repo, os.environ.get("PYTHONPATH"))
    return os.environ["PYTHONPATH"]


# ---- GPUs of a local run -----------------------------------------------------------------------
# What a GPU-tagged rule (resources gpu=1) asks of a local run where that many GPUs are visible.
GPU_JOB_THREADS = 8  # the process feeding the GPU plus data-loading workers (workers_for)
CPU_FALLBACK_THREADS = 1  # no GPU: the job is a CPU job; one core each, side by side


def visible_gpus(env=None, nvidia_smi: str | None = "nvidia-smi") -> int:
    """GPUs this machine offers CUDA jobs, without importing torch (this runs at every parse):
    CUDA_VISIBLE_DEVICES when set (SLURM and users restrict GPUs with it; "" or "-1": none),
    else the lines `nvidia-smi -L` lists, else 0 (no driver, no tool, or it failed)."""
    env = os.environ if env is None else env
    devices = env.get("CUDA_VISIBLE_DEVICES")
    if devices is not None:
        ids = [d for d in devices.split(",") if d.strip() and d.strip() != "-1"]
        return len(ids)
    tool = shutil.which(nvidia_smi) if nvidia_smi else None
    if tool is None:
        return 0
    try:
        listing = subprocess.run([tool, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return 0
    if listing.returncode != 0:
        return 0
    return sum(line.startswith("GPU ") for line in listing.stdout.splitlines())


def gpu_plan(local_main_run: bool, gpu_limit_given: bool, gpus: int) -> tuple[int, int | None]:
    """(threads of a GPU-tagged job, the run's `gpu` resource limit to register or None).

    On a cluster (or inside a cluster job) every GPU job gets its own GPU: full threads, no
    limit here. A local run with GPUs runs as many GPU jobs at once as it has GPUs, unless the
    user gave --resources gpu=N. A local run without one runs them as CPU jobs with one thread
    each and no limit: a limit of one GPU that does not exist would queue them behind each
    other while cores idle (and one thread makes their bytes independent of --cores)."""
    if not local_main_run:
        return GPU_JOB_THREADS, None
    if gpus == 0:
        return CPU_FALLBACK_THREADS, None
    return GPU_JOB_THREADS, (None if gpu_limit_given else gpus)


_STARTED_LOGS: set[str] = set()


@contextmanager
def logged(log_path, step: str, subject: str | None = None):
    """Log to the rule's log file; on failure write one clear line, then re-raise.

    The first use in a process starts the file afresh; later ones (a script that runs
    several stages) append to it.
    """
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    mode = "a" if str(log_path) in _STARTED_LOGS else "w"
    _STARTED_LOGS.add(str(log_path))
    handler = logging.FileHandler(log_path, mode=mode)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    log = logging.getLogger(f"cinerecon.{step}")
    log.info("start%s", f" subject {subject}" if subject else "")
    if _THREADS:  # the job's threads (use_threads) and what is in effect now
        now = thread_state()
        log.info("threads: %d (torch intra-op %s, inter-op %s; pools %s)", _THREADS["threads"], now["torch"],
                 now["torch_interop"], " ".join(f"{k}={v}" for k, v in now["pools"].items()) or "-")
    try:
        yield log
    except Exception as exc:
        message = str(exc)
        if subject and subject not in message:
            message = f"subject {subject}: {message}"
        log.error("%s failed: %s", step, message)
        print(f"cinerecon {step} failed: {message}", file=sys.stderr)
        raise
    else:
        log.info("done")
    finally:
        root.removeHandler(handler)
        handler.close()


def shard_stage(log_path, stage: str, shard: dict, manifest, inputs, outputs, run, params=None,
                raw_files=None, **settings):
    """Run one stage (cinerecon.stages) for the subjects of a shard and write its manifest.

    shard: {"subjects": [ids], "labelled": [ids], "lax": {id: {view: convention}}} (from the
    rule's params); the results root is the manifest's (results/shards/{stage}/{shard}.tsv);
    inputs: the rule's declared inputs (manifests and checkpoints); outputs/run: the stage's
    pair of functions; settings: the stage's keyword arguments. params: the rule's params,
    which with the settings enter each subject's digest (a per-subject dict contributes the
    subject's entry; shard membership none). raw_files(subject): files outside the results
    root the stage reads (cinerecon.batch.run_shard).
    """
    from cinerecon.batch import run_shard
    from cinerecon.faults import raise_on_sigterm
    from cinerecon.layout import Layout
    from cinerecon.stages import Subject

    raise_on_sigterm()
    layout = Layout.of_manifest(manifest)
    labelled = set(shard.get("labelled", ()))
    lax = shard.get("lax", {})
    subjects = {s: Subject(s, s in labelled, lax.get(s)) for s in shard["subjects"]}
    params = dict(params.items()) if hasattr(params, "items") else dict(params or {})

    def describe(s):
        subject = subjects[s]
        return rooted({"id": s, "labelled": subject.labelled, "lax": subject.lax,
                       "settings": {k: subject_view(v, s) for k, v in settings.items()},
                       "params": {k: subject_view(v, s) for k, v in params.items() if k not in SHARD_PARAMS}},
                      str(layout.results))

    with logged(log_path, stage) as log:
        log.info("shard of %d subjects: %s", len(subjects), " ".join(subjects))
        table = run_shard(stage, list(subjects), lambda s: run(layout, subjects[s], **settings),
                          lambda s: outputs(layout, subjects[s], **_output_args(outputs, settings)),
                          manifest, inputs, log, describe,
                          (lambda s: raw_files(subjects[s])) if raw_files else None)
        counts = table["status"].value_counts().to_dict()
        log.info("statuses: %s", counts)
    if os.environ.get(AUDIT_ENV):
        write_read_audit(os.environ[AUDIT_ENV], manifest, list(inputs))
    return table


# Params that describe the shard (its members, a fingerprint of all their raw files), not one
# subject's work: left out of the subjects' digests, so appending a subject to the sheet does
# not make the others of its shard look changed.
SHARD_PARAMS = {"shard", "slices_shard", "scored_shard", "raw_fingerprint"}


def subject_view(value, subject: str):
    """A param as one subject sees it: its own entry of a {subject: value} dict (the
    shard's or the cohort's)."""
    if isinstance(value, dict) and subject in value:
        return value[subject]
    return value


def rooted(value, root: str):
    """`value` with the results root in its paths written as `{results}`: equal results in
    two folders have equal digests."""
    if isinstance(value, str):
        return "{results}" + value[len(root):] if value.startswith(root) else value
    if isinstance(value, Path):
        return rooted(str(value), root)
    if isinstance(value, dict):
        return {k: rooted(v, root) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rooted(v, root) for v in value]
    return value


def _output_args(outputs, settings: dict) -> dict:
    """The subset of a stage's settings its outputs() function takes."""
    import inspect

    names = set(inspect.signature(outputs).parameters) - {"layout", "s"}
    return {k: v for k, v in settings.items() if k in names}


def training_job_for(smk, model_path, subjects=()):
    """The TrainingJob (cinerecon.models.resume) of a training rule's script: its side state and
    data cache beside `model_path`, a fingerprint of its params, subjects and declared inputs,
    saved every `training.save_state_minutes`, deterministic kernels or not by
    `training.deterministic` (config, not params: changing them reruns nothing) and
    DataLoader workers from its threads when it has a GPU."""
    import torch

    from cinerecon.models.resume import training_job

    training = smk.config.get("training") or {}
    workers = workers_for(smk.threads) if torch.cuda.is_available() else 0
    return training_job(model_path, dict(smk.params.items()), subjects, list(smk.input),
                        training.get("save_state_minutes"), workers, bool(training.get("deterministic", True)))
