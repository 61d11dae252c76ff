"""Resumable training: a run killed after an epoch continues from its checkpoint."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from engine_helpers import tiny_spec

from tlbench import cli
from tlbench.core import errors
from tlbench.datasets import fingerprint, load_prepared, make_tiny_prepared
from tlbench.training import callbacks, engine, resume


class Killed(BaseException):
    """Stands in for SIGKILL/preemption: nothing after it runs."""


def _kill_after(monkeypatch, fit: int, epoch: int) -> None:
    """Make the checkpoint callback 'kill' the job right after fit ``fit``'s ``epoch`` (1-based)."""
    original = callbacks.ResumeCallback.on_epoch_end

    def on_epoch_end(self, e, logs=None):
        original(self, e, logs)
        if self.fit == fit and e + 1 == epoch:
            raise Killed()

    monkeypatch.setattr(callbacks.ResumeCallback, "on_epoch_end", on_epoch_end)


def _run_killed_after(monkeypatch, spec: dict, out: Path, fit: int, epoch: int) -> None:
    """Run ``spec`` into ``out``, 'killed' right after fit ``fit``'s ``epoch`` (1-based)."""
    with monkeypatch.context() as m:
        _kill_after(m, fit=fit, epoch=epoch)
        with pytest.raises(Killed):
            engine.run(spec, out)


def _epochs_trained(monkeypatch) -> list[tuple[int, int]]:
    """Record (fit, epoch) of every epoch actually trained from now on."""
    seen: list[tuple[int, int]] = []
    original = callbacks.ResumeCallback.on_epoch_end

    def on_epoch_end(self, e, logs=None):
        seen.append((self.fit, e + 1))
        original(self, e, logs)

    monkeypatch.setattr(callbacks.ResumeCallback, "on_epoch_end", on_epoch_end)
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


def _saved_epochs(monkeypatch) -> list[int]:
    """Record the (1-based) epoch of every epoch checkpoint saved from now on."""
    saved: list[int] = []
    original = resume.Resume.save_epoch

    def save_epoch(self, fit, epoch, *args):
        saved.append(epoch + 1)
        original(self, fit, epoch, *args)

    monkeypatch.setattr(resume.Resume, "save_epoch", save_epoch)
    return saved


@pytest.mark.parametrize("seconds, saved", [("0", [1, 2, 3]), (None, []), ("3600", [])])
def test_an_epoch_is_checkpointed_when_the_interval_has_passed(
    tiny_prepared, tmp_path, monkeypatch, seconds, saved
):
    """TLBENCH_CHECKPOINT_SECONDS (default 60 s of training): a one-second fit saves no
    epoch; 0 saves every epoch. The fit's end is saved either way."""
    if seconds is None:
        monkeypatch.delenv("TLBENCH_CHECKPOINT_SECONDS")
    else:
        monkeypatch.setenv("TLBENCH_CHECKPOINT_SECONDS", seconds)
    seen = _saved_epochs(monkeypatch)
    finished = []
    original = resume.Resume.finish_fit
    monkeypatch.setattr(
        resume.Resume,
        "finish_fit",
        lambda self, *a: (finished.append(a[0]), original(self, *a)),
    )
    engine.run(tiny_spec(tiny_prepared, training={"epochs": 3}), tmp_path / "run")
    assert (seen, finished) == (saved, [0])


def test_a_run_killed_before_its_first_checkpoint_starts_over(tiny_prepared, tmp_path, monkeypatch):
    monkeypatch.setenv("TLBENCH_CHECKPOINT_SECONDS", "3600")
    out = tmp_path / "run"
    spec = tiny_spec(tiny_prepared, training={"epochs": 3})
    _run_killed_after(monkeypatch, spec, out, fit=0, epoch=2)
    assert not (tmp_path / "run.work" / "progress.json").exists()
    trained = _epochs_trained(monkeypatch)
    metrics = engine.run(spec, out)
    assert trained == [(0, 1), (0, 2), (0, 3)]
    assert metrics["epochs_run"] == 3 and len(metrics["attempts"]) == 2


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_a_bad_checkpoint_interval_is_an_error_naming_it(
    tiny_prepared, tmp_path, monkeypatch, value
):
    monkeypatch.setenv("TLBENCH_CHECKPOINT_SECONDS", value)
    with pytest.raises(ValueError, match=f"TLBENCH_CHECKPOINT_SECONDS='{value}'"):
        engine.run(tiny_spec(tiny_prepared), tmp_path / "run")


def test_killed_run_resumes_from_last_finished_epoch(tiny_prepared, tmp_path, monkeypatch):
    out = tmp_path / "run"
    spec = tiny_spec(tiny_prepared, training={"epochs": 3})
    _run_killed_after(monkeypatch, spec, out, fit=0, epoch=2)
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
    attempts = metrics["attempts"]
    assert len(attempts) == 2
    assert metrics["train_seconds"] == pytest.approx(sum(a["train_seconds"] for a in attempts))


def test_run_killed_while_writing_outputs_keeps_its_training_cost(
    tiny_prepared, tmp_path, monkeypatch
):
    """Killed after training, while writing OUTDIR: the rerun trains nothing and
    reports the first attempt's training time plus its own (issue 15: was 0.28 s)."""
    out = tmp_path / "run"
    spec = tiny_spec(tiny_prepared)

    def killed(*args):
        raise Killed()

    with monkeypatch.context() as m:
        m.setattr(engine, "atomic_dir", killed)
        with pytest.raises(Killed):
            engine.run(spec, out)
    trained = _epochs_trained(monkeypatch)
    metrics = engine.run(spec, out)
    assert trained == [] and metrics["resumed"] is True
    first, second = metrics["attempts"]
    assert first["train_seconds"] > second["train_seconds"]  # 2 epochs vs a weights load
    assert metrics["train_seconds"] == pytest.approx(
        first["train_seconds"] + second["train_seconds"]
    )


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
    with pytest.warns(errors.ResumeWarning, match="another run spec"):
        metrics = engine.run(tiny_spec(tiny_prepared, training={"epochs": 2, "batch_size": 8}), out)
    assert metrics["resumed"] is False
    assert metrics["epochs_run"] == 2


# --------------------------------------------------------------------------- a real kill -9

#: ``tlbench`` with TensorFlow's op determinism on, in a subprocess (so it does not
#: leak into other tests); argv[1]: a JSON list of command lines, run in turn.
DETERMINISTIC_TLBENCH = (
    "import json, sys, tensorflow as tf; tf.config.experimental.enable_op_determinism(); "
    "from tlbench.cli import main; sys.exit(max([main(a) for a in json.loads(sys.argv[1])]))"
)


def _tlbench_runs(spec_path, *outs) -> list[str]:
    runs = [["run", str(spec_path), str(out)] for out in outs]
    return [sys.executable, "-c", DETERMINISTIC_TLBENCH, json.dumps(runs)]


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
        _tlbench_runs(spec_path, out), _env("111"), tmp_path / "run.work" / "progress.json", 3
    )
    assert not out.exists()
    # the rerun, then the uninterrupted reference (one process: one TensorFlow start)
    subprocess.run(_tlbench_runs(spec_path, out, reference), env=_env("222"), check=True)

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


# --------------------------------------------------------------------------- damage, stale data


def _run_cli(spec: dict, out: Path, tmp_path: Path) -> int:
    """``tlbench run`` (its entry point, in this process)."""
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return cli.main(["run", str(path), str(out)])


@pytest.fixture(scope="module")
def killed_after_epoch_2(tiny_prepared, tmp_path_factory):
    """(spec, work folder) of a 3-epoch run killed after its epoch 2 (copy before use)."""
    tmp = tmp_path_factory.mktemp("killed")
    spec = tiny_spec(tiny_prepared, training={"epochs": 3})
    with pytest.MonkeyPatch.context() as m:
        _kill_after(m, fit=0, epoch=2)
        with pytest.raises(Killed):
            _run_cli(spec, tmp / "run", tmp)
    return spec, tmp / "run.work"


@pytest.mark.parametrize(
    ("damaged", "trained", "resumed"),
    [
        (["fit0-epoch2.weights.h5"], [(0, 2), (0, 3)], True),  # the epoch before
        (["fit0-epoch2.weights.h5", "fit0-epoch1.weights.h5"], [(0, 1), (0, 2), (0, 3)], False),
        (["progress.json"], [(0, 1), (0, 2), (0, 3)], False),
    ],
    ids=["latest-epoch", "both-epochs", "progress"],
)
def test_damaged_checkpoint_is_discarded_with_a_warning(
    killed_after_epoch_2, tmp_path, monkeypatch, damaged, trained, resumed
):
    """A checkpoint file cut short (a crash before it reached the disk): the rerun
    warns, continues from the last good epoch or from the start, and finishes."""
    spec, killed = killed_after_epoch_2
    out = tmp_path / "run"
    shutil.copytree(killed, tmp_path / "run.work")
    for name in damaged:
        path = tmp_path / "run.work" / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    seen = _epochs_trained(monkeypatch)
    with pytest.warns(errors.ResumeWarning, match=damaged[0].replace(".", r"\.")):
        assert _run_cli(spec, out, tmp_path) == 0
    assert seen == trained
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["resumed"] is resumed
    assert [r["epoch"] for r in _history(out)] == ["1", "2", "3"]
    assert len(metrics["attempts"]) == 2  # the killed attempt's time still counts


def test_data_fingerprint_follows_the_prepared_content(tmp_path):
    first = make_tiny_prepared(tmp_path / "a", num_classes=3, size=8, per_class=6, seed=0)
    again = make_tiny_prepared(tmp_path / "b", num_classes=3, size=8, per_class=6, seed=0)
    other = make_tiny_prepared(tmp_path / "c", num_classes=3, size=8, per_class=6, seed=1)
    keys = [fingerprint.data_fingerprint(load_prepared(p)) for p in (first, again, other)]
    assert keys[0] == keys[1]  # prepared again identically (prepare_seconds differ)
    assert keys[0] != keys[2]


def test_checkpoint_of_other_data_is_discarded_with_a_warning(tmp_path, monkeypatch):
    """Re-preparing the data (other labels) in place: the rerun starts over, warns,
    and history.csv holds only the new run's epochs."""
    data = tmp_path / "data"
    make_tiny_prepared(data, num_classes=3, size=16, per_class=12, seed=0)
    out = tmp_path / "run"
    spec = tiny_spec(data, training={"epochs": 2})
    with monkeypatch.context() as m:
        _kill_after(m, fit=0, epoch=1)
        with pytest.raises(Killed):
            _run_cli(spec, out, tmp_path)
    make_tiny_prepared(data, num_classes=3, size=16, per_class=12, seed=1)
    seen = _epochs_trained(monkeypatch)
    with pytest.warns(errors.ResumeWarning, match="other data"):
        assert _run_cli(spec, out, tmp_path) == 0
    assert seen == [(0, 1), (0, 2)]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed"] is False and len(metrics["attempts"]) == 1
    assert [r["epoch"] for r in _history(out)] == ["1", "2"]
