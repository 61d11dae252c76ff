"""Resumable training: a run killed after an epoch continues from its checkpoint."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from engine_helpers import tiny_spec

from tlbench import engine


class Killed(BaseException):
    """Stands in for SIGKILL/preemption: nothing after it runs."""


def _kill_after(monkeypatch, fit: int, epoch: int) -> None:
    """Make the checkpoint callback 'kill' the job right after fit ``fit``'s ``epoch`` (1-based)."""
    original = engine.ResumeCallback.on_epoch_end

    def on_epoch_end(self, e, logs=None):
        original(self, e, logs)
        if self.fit == fit and e + 1 == epoch:
            raise Killed()

    monkeypatch.setattr(engine.ResumeCallback, "on_epoch_end", on_epoch_end)


def _epochs_trained(monkeypatch) -> list[tuple[int, int]]:
    """Record (fit, epoch) of every epoch actually trained from now on."""
    seen: list[tuple[int, int]] = []
    original = engine.ResumeCallback.on_epoch_end

    def on_epoch_end(self, e, logs=None):
        seen.append((self.fit, e + 1))
        original(self, e, logs)

    monkeypatch.setattr(engine.ResumeCallback, "on_epoch_end", on_epoch_end)
    return seen


def _history(outdir) -> list[dict[str, str]]:
    with open(outdir / "history.csv") as f:
        return list(csv.DictReader(f))


def test_uninterrupted_run_is_not_resumed_and_leaves_no_work_folder(tiny_prepared, tmp_path):
    out = tmp_path / "run"
    metrics = engine.run(tiny_spec(tiny_prepared), out)
    assert metrics["resumed"] is False
    assert not (tmp_path / "run.work").exists()
    assert "slurm_job_id" in metrics["environment"]


def test_killed_run_resumes_from_last_finished_epoch(tiny_prepared, tmp_path, monkeypatch):
    out = tmp_path / "run"
    spec = tiny_spec(tiny_prepared, training={"epochs": 3})
    with monkeypatch.context() as m:
        _kill_after(m, fit=0, epoch=2)
        with pytest.raises(Killed):
            engine.run(spec, out)
    assert not out.exists()
    progress = json.loads((tmp_path / "run.work" / "progress.json").read_text())
    assert progress["current"]["epoch"] == 2 and len(progress["rows"]) == 2

    trained = _epochs_trained(monkeypatch)
    metrics = engine.run(spec, out)
    assert trained == [(0, 3)]  # only the missing epoch is trained
    assert metrics["resumed"] is True
    assert metrics["epochs_run"] == 3 and metrics["status"] == "ok"
    assert [r["epoch"] for r in _history(out)] == ["1", "2", "3"]
    assert not (tmp_path / "run.work").exists()


def test_two_phase_resume_skips_finished_phase(tiny_prepared, tmp_path, monkeypatch):
    """Killed in phase 2: phase 1 is restored, not retrained; early stopping state is kept."""
    out = tmp_path / "run"
    spec = tiny_spec(
        tiny_prepared,
        "two_phase",
        training={"epochs": 5, "early_stopping": {"patience": 5, "monitor": "val_accuracy"}},
    )
    spec["strategy"]["params"] = {"phase1_epochs": 2, "unfreeze": 2}
    reference = engine.run(spec, tmp_path / "reference")
    phases = [r["phase"] for r in _history(tmp_path / "reference")]
    assert len(set(phases)) == 2
    with monkeypatch.context() as m:
        _kill_after(m, fit=1, epoch=1)
        with pytest.raises(Killed):
            engine.run(spec, out)
    trained = _epochs_trained(monkeypatch)
    metrics = engine.run(spec, out)
    assert trained and all(fit == 1 for fit, _ in trained)
    assert metrics["resumed"] is True
    assert [r["phase"] for r in _history(out)] == phases
    assert metrics["epochs_run"] == reference["epochs_run"]


def test_checkpoint_of_another_spec_is_discarded(tiny_prepared, tmp_path, monkeypatch):
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        _kill_after(m, fit=0, epoch=1)
        with pytest.raises(Killed):
            engine.run(tiny_spec(tiny_prepared, training={"epochs": 2}), out)
    metrics = engine.run(tiny_spec(tiny_prepared, training={"epochs": 2, "batch_size": 8}), out)
    assert metrics["resumed"] is False
    assert metrics["epochs_run"] == 2


# --------------------------------------------------------------------------- a real kill -9

#: ``tlbench run`` with TensorFlow's op determinism on (in a subprocess, so it does
#: not leak into other tests).
DETERMINISTIC_TLBENCH = (
    "import sys, tensorflow as tf; tf.config.experimental.enable_op_determinism(); "
    "from tlbench.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _tlbench_run(spec_path, out) -> list[str]:
    return [sys.executable, "-c", DETERMINISTIC_TLBENCH, "run", str(spec_path), str(out)]


def _env(job_id: str) -> dict[str, str]:
    src = str(Path(engine.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "SLURM_JOB_ID": job_id, "TLBENCH_THREADS": "1"}


def _kill_in_epoch(cmd, env, progress: Path, after: int, timeout: float = 300) -> None:
    """Start ``cmd``; SIGKILL it once ``progress`` records epoch ``after`` (so in the next)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                current = json.loads(progress.read_text())["current"]
            except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
                current = None
            if current and current["epoch"] >= after:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    raise AssertionError(
        f"the run ended before epoch {after} was checkpointed: {proc.stderr.read()}"
    )


def _weights(out: Path) -> list:
    import keras

    return keras.saving.load_model(out / "model.keras", compile=False).get_weights()


def test_sigkilled_run_is_the_same_run_and_counts_every_attempt(tiny_prepared, tmp_path):
    """kill -9 in epoch 4 of 6, rerun: the uninterrupted run's history and weights
    (dropout, augmentation and data order drawn per epoch), and the cost of both attempts."""
    spec = tiny_spec(
        tiny_prepared, training={"epochs": 6}, augmentation={"name": "geometric", "params": {}}
    )
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    out, reference = tmp_path / "run", tmp_path / "reference"
    _kill_in_epoch(
        _tlbench_run(spec_path, out), _env("111"), tmp_path / "run.work" / "progress.json", 3
    )
    assert not out.exists()
    for target, job in ((out, "222"), (reference, "333")):
        subprocess.run(_tlbench_run(spec_path, target), env=_env(job), check=True)

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed"] is True
    attempts = metrics["attempts"]
    assert [a["slurm_job_id"] for a in attempts] == ["111", "222"]
    assert all(a["train_seconds"] > 0 for a in attempts)
    assert metrics["train_seconds"] == pytest.approx(sum(a["train_seconds"] for a in attempts))
    assert metrics["setup_seconds"] == pytest.approx(sum(a["setup_seconds"] for a in attempts))
    assert attempts[0]["finished_utc"] <= attempts[1]["started_utc"]

    got, want = _history(out), _history(reference)
    assert [r["epoch"] for r in got] == [str(e) for e in range(1, 7)]
    for column in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(
            [float(r[column]) for r in got], [float(r[column]) for r in want], rtol=1e-5
        )
    for a, b in zip(_weights(out), _weights(reference), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
