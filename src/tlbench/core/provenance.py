"""Provenance of a run: software versions, hardware, git commit, time.

:func:`environment` returns a JSON-ready dict recorded in every run's
``metrics.json``. It is fast (no heavy imports: versions come from
``importlib.metadata``; the GPU is asked of a backend only when that backend
is already imported) and never raises: a field that cannot be determined is
recorded as a string starting with ``"error: "``.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import importlib.metadata
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tlbench

#: Seconds allowed for each external command (git, nvidia-smi).
COMMAND_TIMEOUT = 0.4


def _safe(func: Callable[[], Any]) -> Any:
    """Call ``func``; on any exception return ``"error: <type>: <message>"``."""
    try:
        return func()
    except Exception as exc:  # provenance must never fail a run
        return f"error: {type(exc).__name__}: {exc}"


def package_version(name: str) -> str | None:
    """Installed version of distribution ``name`` or ``None`` when not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _tensorflow_version() -> str | None:
    """TensorFlow's version (any of its distributions) without importing it."""
    module = sys.modules.get("tensorflow")
    if module is not None and hasattr(module, "__version__"):
        return str(module.__version__)
    for dist in ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tf-nightly"):
        version = package_version(dist)
        if version is not None:
            return version
    return None


def _keras_backend() -> str | None:
    """The Keras backend in use (from keras if imported, else KERAS_BACKEND / keras.json)."""
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        return str(keras.backend.backend())
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    config = home / "keras.json"
    if config.is_file():
        return str(json.loads(config.read_text()).get("backend", "tensorflow"))
    return "tensorflow" if package_version("keras") else None


def _cpuinfo_field(*names: str) -> str | None:
    """The value of the first /proc/cpuinfo line starting with one of ``names`` (Linux)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(names):
                return line.split(":", 1)[1].strip()
    return None


def _cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux) or the platform module."""
    model = _cpuinfo_field("model name", "hardware", "cpu model")
    return model if model is not None else platform.processor() or platform.machine()


#: SIMD extensions that set a CPU's speed for convolutions, widest first.
SIMD_LEVELS = ("amx_tile", "avx512f", "avx2", "avx", "sse4_2")


def _cpu_simd() -> str | None:
    """The widest SIMD extension of the CPU (e.g. ``avx512f``, ``avx2``) from /proc/cpuinfo.

    Training time on "2 CPU cores" differs several-fold between CPUs (a 2-core AVX2
    EPYC took 7x longer per small-CNN epoch than the machine that measured the seed
    studies), so wall times name the CPU and this.
    """
    flags = _cpuinfo_field("flags")
    if flags is None:
        return None
    return next((level for level in SIMD_LEVELS if level in set(flags.split())), None)


def _memory_gb() -> float | None:
    """Total physical memory in GiB (Linux /proc/meminfo, else sysconf)."""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 2)
    if hasattr(os, "sysconf"):
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 2)
    return None


def _gpus() -> list[str]:
    """GPU names: from TF or JAX if already imported, else ``nvidia-smi``, else ``[]``."""
    tf = sys.modules.get("tensorflow")
    if tf is not None and hasattr(tf, "config"):
        devices = tf.config.list_physical_devices("GPU")
        names = []
        for device in devices:
            details = _safe(lambda d=device: tf.config.experimental.get_device_details(d))
            name = details.get("device_name") if isinstance(details, dict) else None
            names.append(name or device.name)
        return names
    jax = sys.modules.get("jax")
    if jax is not None and hasattr(jax, "devices"):
        return [str(getattr(d, "device_kind", d)) for d in jax.devices() if d.platform in ("gpu",)]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    out = subprocess.run(
        [smi, "--query-gpu=name,memory.total", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        timeout=1.0,
        check=True,
    ).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def _git(args: list[str], cwd: Path) -> str:
    """Run ``git args`` in ``cwd`` and return stripped stdout (raises on failure)."""
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT * 5,  # generous: a cold git status can be slow
        check=True,
    ).stdout.strip()


def project_root() -> Path:
    """The folder of the tlbench checkout this module lives in (``src/tlbench/..``)."""
    return Path(__file__).resolve().parents[2]


#: Tracked files the workflow itself writes into the checkout (the rules
#: ``results_page``, ``seed_results`` and ``study_results``): outputs, not code, so a
#: study run after another in the same checkout is not "dirty" for them.
WORKFLOW_OUTPUTS = ("docs/results.md", "docs/results")


def git_state(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """``{"commit": sha | None, "dirty": bool | None}`` of the git checkout at ``path``.

    ``dirty``: a tracked file differs from the commit, leaving out the pages the workflow
    writes itself (:data:`WORKFLOW_OUTPUTS`). Both are ``None`` outside a git work tree
    or when git is not installed.
    """
    root = Path(path) if path is not None else project_root()
    if shutil.which("git") is None:
        return {"commit": None, "dirty": None, "note": "git not installed"}
    try:
        inside = _git(["rev-parse", "--is-inside-work-tree"], root)
    except (subprocess.CalledProcessError, OSError):
        return {"commit": None, "dirty": None}
    if inside != "true":
        return {"commit": None, "dirty": None}
    commit = _safe(lambda: _git(["rev-parse", "HEAD"], root))
    outputs = [f":(top,exclude){output}" for output in WORKFLOW_OUTPUTS]
    command = ["status", "--porcelain", "--untracked-files=no", "--", ":(top)", *outputs]
    status = _safe(lambda: _git(command, root))
    dirty = None if status.startswith("error: ") else bool(status)
    return {"commit": commit, "dirty": dirty}


def environment() -> dict[str, Any]:
    """Versions, hardware, git commit and UTC time of the current process; never raises."""

    git = _safe(git_state)
    if not isinstance(git, dict):
        git = {"commit": git, "dirty": None}
    return {
        "python": sys.version.split()[0],
        "tlbench": getattr(tlbench, "__version__", None),
        "keras": _safe(lambda: package_version("keras")),
        "backend": _safe(_keras_backend),
        "tensorflow": _safe(_tensorflow_version),
        "jax": _safe(lambda: package_version("jax")),
        "numpy": _safe(lambda: package_version("numpy")),
        "platform": _safe(platform.platform),
        "cpu": _safe(_cpu_model),
        "cpu_simd": _safe(_cpu_simd),
        "cpu_count": _safe(os.cpu_count),
        "cpu_usable": _safe(lambda: len(os.sched_getaffinity(0))),
        "memory_gb": _safe(_memory_gb),
        "gpu": _safe(_gpus),
        "hostname": _safe(socket.gethostname),
        "job_process": _safe(job_process),
        "slurm": _safe(slurm_job),
        "git_commit": git.get("commit"),
        "git_dirty": git.get("dirty"),
        "time_utc": utc_now(),
    }


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second (``2026-11-23T16:20:53+00:00``)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


#: Set in a forked job: the server's socket (:func:`job_process` records it).
FORKED_ENV = "TLBENCH_JOB_FORKED_FROM"


def job_process() -> str:
    """How this process started (``metrics.json``'s ``environment.job_process``):
    ``forked from the job server`` or ``own process``."""
    return "forked from the job server" if os.environ.get(FORKED_ENV) else "own process"


#: The SLURM variables :func:`slurm_job` records, by the name it records them under.
SLURM_VARIABLES = {
    "job_id": "SLURM_JOB_ID",
    "step_id": "SLURM_STEP_ID",
    "job_name": "SLURM_JOB_NAME",
    "partition": "SLURM_JOB_PARTITION",
    "node": "SLURMD_NODENAME",
    "cpus_per_task": "SLURM_CPUS_PER_TASK",
    "gpus": "SLURM_GPUS",
    "restart_count": "SLURM_RESTART_COUNT",
}


def slurm_job() -> dict[str, str | None] | None:
    """The SLURM job this process runs in (``environment.slurm`` of ``metrics.json``):
    job and step id, job name, partition, node, CPUs per task, GPUs, restarts (a
    requeued job's count); ``None`` outside SLURM. The runs of a packed job
    (docs/slurm.md) share its ``job_id``, each in its own step."""
    if not os.environ.get("SLURM_JOB_ID"):
        return None
    return {name: os.environ.get(variable) for name, variable in SLURM_VARIABLES.items()}
