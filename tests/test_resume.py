"""Resumable training: a run killed after an epoch continues from its checkpoint."""

from __future__ import annotations

import csv
import json

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
