"""A run's guards through ``tlbench run`` (issue 31): the test-split ledger's line is
written before the run folder is committed, survives a torn last line and a file
system without ``flock``, and fingerprints the prepared data by content only."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from engine_helpers import tiny_spec

from tlbench.analysis import ledger, lookcount
from tlbench.cli import main
from tlbench.core.errors import LedgerWarning, RunLockedError
from tlbench.training import engine
from tlbench.training.resume import Resume

ROOT = Path(__file__).resolve().parents[1]


def _spec(tmp_path, prepared, **training):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(tiny_spec(prepared, training={"epochs": 1, **training})))
    return path


def test_a_failing_ledger_write_leaves_no_run_folder(tiny_prepared, tmp_path, capsys):
    """Reproduced: the ledger's line was written after the rename, so a failing write
    failed the job with the run folder in place (Snakemake then deletes it, and the
    retrain fails the same way). Now the write fails the run before its commit."""
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the ledger's folder should be")
    out = tmp_path / "runs" / "r"
    with pytest.raises(OSError, match="not_a_folder"):
        main(["run", str(_spec(tmp_path, tiny_prepared)), str(out),
              "--ledger", str(blocker / ledger.NAME)])  # fmt: skip
    assert not out.exists()
    assert (tmp_path / "runs" / "r.work").is_dir()  # the retry resumes from the checkpoint


def _looks(path, prepared):
    """The looks table of a study ledger whose one dataset, tiny, is ``prepared``."""
    return lookcount.looks_table(lookcount.count_looks(path, {"tiny": prepared})).set_index(
        "dataset"
    )


def test_a_commit_that_fails_after_the_ledger_line_counts_one_look(
    tiny_prepared, tmp_path, monkeypatch
):
    """The line is written, then the rename fails; the retry (resumed from the work
    folder) writes a second line of the same evaluation: one run spec, one evaluation."""
    out = tmp_path / "runs" / "r"
    spec = _spec(tmp_path, tiny_prepared)
    replace = os.replace

    def failing(src, dst, *args, **kwargs):
        if os.fspath(dst) == os.fspath(out):
            raise OSError(errno.EIO, "simulated failure of the commit", os.fspath(dst))
        return replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="simulated failure of the commit"):
        main(["run", str(spec), str(out)])
    monkeypatch.setattr(os, "replace", replace)
    assert not out.exists() and len(ledger.read(tmp_path / "runs" / ledger.NAME)) == 1
    assert main(["run", str(spec), str(out)]) == 0
    lines = ledger.read(tmp_path / "runs" / ledger.NAME)
    assert len(lines) == 2 and lines[0]["evaluation"] == lines[1]["evaluation"]
    table = _looks(tmp_path / "runs" / ledger.NAME, tiny_prepared)
    assert table.loc["tiny", "distinct run specs"] == 1
    assert table.loc["tiny", "test evaluations"] == 1
    # a deliberate rerun of the finished run is another evaluation of the same spec
    shutil.rmtree(out)
    assert main(["run", str(spec), str(out)]) == 0
    table = _looks(tmp_path / "runs" / ledger.NAME, tiny_prepared)
    assert table.loc["tiny", "distinct run specs"] == 1
    assert table.loc["tiny", "test evaluations"] == 2


def test_a_torn_last_line_is_repaired_with_a_warning(tiny_prepared, tmp_path, capsys):
    """Reproduced as written: ``printf '{"dataset":"dig' >> test_evaluations.jsonl``
    made every later table job fail with "not a JSON ledger line", and the next
    run's line was glued onto the fragment."""
    spec = _spec(tmp_path, tiny_prepared)
    path = tmp_path / "runs" / ledger.NAME
    assert main(["run", str(spec), str(tmp_path / "runs" / "a")]) == 0
    with open(path, "a") as handle:
        handle.write('{"dataset":"dig')
    with pytest.warns(LedgerWarning, match=r'torn last line .*\{"dataset":"dig'):
        table = _looks(path, tiny_prepared)  # the table job reads on
    assert table.loc["tiny", "test evaluations"] == 1
    with pytest.warns(LedgerWarning, match="torn last line .* removed"):
        assert main(["run", str(spec), str(tmp_path / "runs" / "b")]) == 0
    assert path.read_text().count("\n") == 2 and path.read_text().endswith("}\n")
    assert len(ledger.read(path)) == 2
    # damage that is not a torn line is still an error naming the line
    path.write_text("not a ledger line\n" + path.read_text())
    with pytest.raises(ValueError, match=f"{ledger.NAME}:1: not a JSON ledger line"):
        ledger.read(path)


def test_a_partial_write_is_undone(tmp_path, monkeypatch):
    """A write cut short (a full disk) leaves no torn line behind."""
    path = tmp_path / ledger.NAME
    record = {"dataset": "d", "prepared_fingerprint": "f", "spec_hash": "s", "time_utc": "t",
              "code": {}}  # fmt: skip
    ledger.append(path, record)
    before = path.read_bytes()
    write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: write(fd, data[:10]))
    with pytest.raises(OSError, match="wrote 10 of"):
        ledger.append(path, record)
    assert path.read_bytes() == before


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.EOPNOTSUPP])
def test_without_flock_the_line_is_appended_with_a_warning(
    tiny_prepared, tmp_path, monkeypatch, code
):
    """Reproduced: a file system without ``flock`` (Lustre mounted without it) made
    the ledger write raise after the run was committed."""

    def no_flock(fd, operation):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fcntl, "flock", no_flock)
    out = tmp_path / "runs" / "r"
    with pytest.warns(LedgerWarning, match="flock.*O_APPEND"):
        assert main(["run", str(_spec(tmp_path, tiny_prepared)), str(out)]) == 0
    assert (out / "metrics.json").is_file()
    assert len(ledger.read(tmp_path / "runs" / ledger.NAME)) == 1


def test_the_data_fingerprint_is_content_only(tiny_prepared, tmp_path):
    """Reproduced: the fingerprint was the sha256 of manifest.json, whose
    ``prepare_seconds`` differs every time the same data is prepared again."""
    again = tmp_path / "again"
    shutil.copytree(tiny_prepared, again)
    manifest = json.loads((again / "manifest.json").read_text())
    manifest["prepare_seconds"] = manifest["prepare_seconds"] + 1.5
    (again / "manifest.json").write_text(json.dumps(manifest, indent=2))
    assert ledger.prepared_fingerprint(again) == ledger.prepared_fingerprint(tiny_prepared)
    manifest["seed"] = manifest["seed"] + 1  # content: another split
    (again / "manifest.json").write_text(json.dumps(manifest))
    assert ledger.prepared_fingerprint(again) != ledger.prepared_fingerprint(tiny_prepared)


def test_a_second_writer_of_one_run_fails_at_once_naming_the_holder(
    tiny_prepared, tmp_path, capsys
):
    """Reproduced: two processes training one run at once (two studies sharing
    ``results:``, or ``--nolock``) both ran; the second discarded the first's
    checkpoints (another spec) or deleted its temporaries, and each committed over
    the other. Now the second fails at once, naming the first's host and pid."""
    spec = tiny_spec(tiny_prepared, training={"epochs": 500})
    first_spec, second_spec = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first_spec.write_text(yaml.safe_dump(spec))
    spec["training"]["epochs"] = 1
    second_spec.write_text(yaml.safe_dump(spec))
    out = tmp_path / "runs" / "r"
    first = subprocess.Popen(
        [sys.executable, "-m", "tlbench.cli", "run", str(first_spec), str(out), "--threads", "1"],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TLBENCH_CHECKPOINT_SECONDS": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    work = tmp_path / "runs" / "r.work"
    try:
        deadline = time.time() + 120
        while not (work / "progress.json").exists() and time.time() < deadline:
            time.sleep(0.2)
        progress = (work / "progress.json").read_text()
        started = time.perf_counter()
        with pytest.raises(RunLockedError):  # the engine's error, as the workflow's job sees it
            engine.run(yaml.safe_load(second_spec.read_text()), out)
        assert time.perf_counter() - started < 10  # at once, not after training
        capsys.readouterr()
        assert main(["run", str(second_spec), str(out)]) == 1  # `tlbench run`: one line
        message = capsys.readouterr().err
        assert message.startswith("tlbench run: error: ") and message.count("\n") == 1
        assert f"pid {first.pid}" in message and socket.gethostname() in message
        assert str(out) in message
        assert first.poll() is None and not out.exists()
        # the first writer's checkpoints are untouched
        assert (
            json.loads(progress)["spec"] == json.loads((work / "progress.json").read_text())["spec"]
        )
    finally:
        first.kill()
        first.wait()
    # the holder gone (its lock released by the kernel), the run is written
    assert main(["run", str(second_spec), str(out)]) == 0
    assert (out / "metrics.json").is_file() and not work.exists()


class _Weights:
    """A model's ``save_weights`` stand-in: records the temporary it is given."""

    def __init__(self):
        self.paths = []

    def save_weights(self, path):
        self.paths.append(Path(path))
        Path(path).write_bytes(b"weights")


def test_checkpoint_temporaries_are_per_writer_and_a_live_ones_are_kept(tmp_path):
    """Reproduced: the checkpoint code wrote every file through one fixed temporary
    name (``.tmp-<name>``) and, on opening a work folder, deleted every temporary in
    it, a live writer's too."""
    work = tmp_path / "run.work"
    work.mkdir()
    host = socket.gethostname()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = work / f".fit0-final.weights.h5.tmp-{host}-{sleeper.pid}-abc.weights.h5"
        dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                                  capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        dead = work / f".fit0-final.weights.h5.tmp-{host}-{dead_pid}-abc.weights.h5"
        live.write_bytes(b"being written")
        dead.write_bytes(b"left by a killed writer")
        resume = Resume(work, {"spec": 1})
        assert live.exists() and not dead.exists()
        model = _Weights()
        resume.finish_fit(0, model, [], None)
        resume.finish_fit(1, model, [], None)
        first, second = model.paths
        assert first.name.startswith(f".fit0-final.weights.h5.tmp-{host}-{os.getpid()}-")
        assert first.name.endswith(".weights.h5") and first.name != live.name
        assert second.name.startswith(f".fit1-final.weights.h5.tmp-{host}-{os.getpid()}-")
        assert (work / "fit0-final.weights.h5").read_bytes() == b"weights"
        assert live.exists()  # the other writer's temporary survives this one's writes
    finally:
        sleeper.kill()
        sleeper.wait()


def test_through_snakemake_a_failing_ledger_write_keeps_the_training(tmp_path):
    """Reproduced through the workflow: the ledger's line failed after the commit, so
    Snakemake deleted the finished run and its checkpoints were gone: the retry trained
    from scratch. Now the job fails before the commit with the work folder kept, and
    the retry resumes from it."""
    config = tmp_path / "study.yaml"
    config.write_text(
        "datasets:\n  tiny: {loader: synthetic, num_classes: 2, per_class: 6, image_size: 8}\n"
        "backbones:\n  cnn: {name: small_cnn, weights: none, kwargs: {widths: [4, 8]}}\n"
        "strategies:\n  scratch: {name: scratch, training: {epochs: 2}}\n"
        "augmentations:\n  none: {name: none}\n"
        "seeds: [0]\n"
        "matrix:\n  - {datasets: [tiny], backbones: [cnn], strategies: [scratch], augmentations: [none]}\n"
    )
    blocker = tmp_path / "results" / ledger.NAME
    blocker.mkdir(parents=True)  # the ledger cannot be opened for appending
    run = "results/runs/tiny/cnn/scratch/none/seed0"
    snakemake = Path(sys.executable).with_name("snakemake")
    command = [str(snakemake), "--snakefile", str(ROOT / "Snakefile"), "--directory",
               str(tmp_path), "--configfile", str(config), "--cores", "1", run]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TLBENCH_CHECKPOINT_SECONDS": "0",
           "PATH": f"{snakemake.parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    failed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert failed.returncode != 0
    log = (tmp_path / "results/logs/runs/tiny/cnn/scratch/none/seed0.log").read_text()
    assert ledger.NAME in log
    assert not (tmp_path / run).exists() and (tmp_path / f"{run}.work").is_dir()
    blocker.rmdir()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / run / "metrics.json").read_text())
    assert metrics["resumed"] is True and len(metrics["attempts"]) == 2
    lines = ledger.read(blocker)
    prepared = tmp_path / "results" / "prepared" / "tiny"
    assert len(lines) == 1 and _looks(blocker, prepared).loc["tiny", "test evaluations"] == 1
