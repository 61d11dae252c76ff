"""Tests of tlbench.core.provenance."""

from __future__ import annotations

import json
import subprocess
import time

import tlbench
from tlbench.core import provenance

EXPECTED_KEYS = {
    "python", "tlbench", "keras", "backend", "tensorflow", "jax", "numpy", "platform",
    "cpu", "cpu_simd", "cpu_count", "memory_gb", "gpu", "hostname", "git_commit", "git_dirty", "time_utc",
}  # fmt: skip


def test_environment_fields_fast_and_json_ready():
    start = time.perf_counter()
    env = provenance.environment()
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"environment() took {elapsed:.2f}s"
    assert EXPECTED_KEYS <= set(env)
    assert env["tlbench"] == tlbench.__version__
    assert env["numpy"] == provenance.package_version("numpy")
    assert isinstance(env["gpu"], list)
    assert env["cpu_count"] >= 1
    assert env["time_utc"].endswith("+00:00")
    json.dumps(env)


def test_git_commit_of_checkout():
    root = provenance.project_root()
    state = provenance.git_state(root)
    expected = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    if not expected:  # not a git checkout (e.g. a source tarball)
        assert state["commit"] is None
    else:
        assert state["commit"] == expected
        assert isinstance(state["dirty"], bool)


def test_git_state_outside_git_is_none(tmp_path):
    assert provenance.git_state(tmp_path) == {"commit": None, "dirty": None}


def test_git_dirty_detected(tmp_path):
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "a.txt").write_text("1")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    assert provenance.git_state(tmp_path)["dirty"] is False
    (tmp_path / "a.txt").write_text("2")
    state = provenance.git_state(tmp_path)
    assert state["dirty"] is True and len(state["commit"]) == 40


def test_pages_the_workflow_writes_do_not_make_the_checkout_dirty(tmp_path):
    """A second study in the same checkout finds docs/results.md and its sections
    rewritten by the first: outputs, not code; any other tracked change still counts."""

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "docs" / "results").mkdir(parents=True)
    (tmp_path / "src").mkdir()
    for name in ("docs/results.md", "docs/results/seed000.md", "docs/guide.md", "src/x.py"):
        (tmp_path / name).write_text("1")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    (tmp_path / "docs/results.md").write_text("2")
    (tmp_path / "docs/results/seed000.md").write_text("2")
    assert provenance.git_state(tmp_path)["dirty"] is False
    assert provenance.git_state(tmp_path / "src")["dirty"] is False  # from a subfolder too
    (tmp_path / "docs/guide.md").write_text("2")
    assert provenance.git_state(tmp_path)["dirty"] is True
    (tmp_path / "docs/guide.md").write_text("1")
    (tmp_path / "src/x.py").write_text("2")
    assert provenance.git_state(tmp_path / "docs")["dirty"] is True


def test_missing_package_version_is_none():
    assert provenance.package_version("surely-not-an-installed-package-xyz") is None


def test_environment_never_raises(monkeypatch):
    def boom() -> str:
        raise RuntimeError("no cpu")

    monkeypatch.setattr(provenance, "_cpu_model", boom)
    env = provenance.environment()
    assert env["cpu"] == "error: RuntimeError: no cpu"


def test_cpu_simd_names_the_widest_extension(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: AMD EPYC\nflags\t\t: fpu sse4_2 avx fma avx2 bmi2\n")
    real_path = provenance.Path
    monkeypatch.setattr(
        provenance, "Path", lambda p, *a: cpuinfo if p == "/proc/cpuinfo" else real_path(p, *a)
    )
    assert provenance._cpu_simd() == "avx2"
    cpuinfo.write_text("flags\t: sse4_2 avx avx2 avx512f avx512bw\n")
    assert provenance._cpu_simd() == "avx512f"
    cpuinfo.write_text("flags\t: fpu\n")
    assert provenance._cpu_simd() is None


def test_slurm_job_recorded_inside_a_job_only(monkeypatch):
    """A run records the SLURM job (and step) it ran in; outside SLURM, null."""
    for variable in provenance.SLURM_VARIABLES.values():
        monkeypatch.delenv(variable, raising=False)
    assert provenance.environment()["slurm"] is None
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_STEP_ID", "3")
    monkeypatch.setenv("SLURMD_NODENAME", "gpu07")
    slurm = provenance.environment()["slurm"]
    assert slurm["job_id"] == "4242" and slurm["step_id"] == "3" and slurm["node"] == "gpu07"
    assert slurm["partition"] is None  # a variable SLURM did not set
    json.dumps(slurm)
