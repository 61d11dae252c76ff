"""The tlbench command line: run, prepare, features; errors exit 2 with one line."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml
from engine_helpers import tiny_spec

from tlbench.cli import main


def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def test_run_writes_outputs(tiny_prepared, tmp_path, capsys, machine_ledger):
    from tlbench.analysis import ledger
    from tlbench.datasets.fingerprint import split_fingerprint

    spec = write(tmp_path / "spec.yaml", tiny_spec(tiny_prepared, training={"epochs": 1}))
    assert main(["run", str(spec), str(tmp_path / "out"), "--threads", "2"]) == 0
    out = capsys.readouterr().out
    assert "ok: " in out
    # a long run's log shows where it is: the phase, then each epoch
    assert re.search(r"^phase train: epochs 1 to 1\n.* - val_accuracy: ", out, re.M), out
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["epochs_run"] == 1
    assert metrics["pilot"] is False and metrics["test"]["n"] > 0
    # the test evaluation is on record: one ledger line beside OUTDIR
    lines = ledger.read(tmp_path / ledger.NAME)
    assert len(lines) == 1
    assert lines[0]["spec_hash"] == ledger.spec_hash(metrics["spec"])
    assert lines[0]["prepared_fingerprint"] == ledger.prepared_fingerprint(tiny_prepared)
    assert lines[0]["dataset"] == "tiny" and lines[0]["code"]["tlbench"]
    # and in the machine's ledger, naming the study ledger it was written beside
    (copy,) = ledger.read(machine_ledger)
    assert copy == {**lines[0], "ledger": str((tmp_path / ledger.NAME).resolve())}
    assert copy["test_fingerprint"] == split_fingerprint(tiny_prepared, "test")
    import shutil

    shutil.rmtree(tmp_path / "out")  # deleting the run keeps the record of its look
    assert len(ledger.read(tmp_path / ledger.NAME)) == 1


@pytest.mark.parametrize(
    "change, message",
    [
        ({"training": {"epochs": 0}}, "training.epochs: 0 must be an integer >= 1"),
        ({"strategy": {"name": "finetune"}}, "strategy.name: unknown strategy 'finetune'"),
        ({"extra": 1}, "extra: unknown key; valid keys: dataset"),
    ],
)
def test_spec_errors_exit_2(tiny_prepared, tmp_path, capsys, change, message):
    spec = tiny_spec(tiny_prepared)
    for key, value in change.items():
        spec[key] = {**spec[key], **value} if isinstance(spec.get(key), dict) else value
    path = write(tmp_path / "spec.yaml", spec)
    assert main(["run", str(path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_missing_spec_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml"), str(tmp_path / "out")]) == 2
    assert "nope.yaml does not exist" in capsys.readouterr().err


def test_bad_thread_env(tiny_prepared, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TLBENCH_THREADS", "many")
    spec = write(tmp_path / "spec.yaml", tiny_spec(tiny_prepared))
    assert main(["run", str(spec), str(tmp_path / "out")]) == 2
    assert "TLBENCH_THREADS: 'many'" in capsys.readouterr().err


def test_prepare(tmp_path):
    config = write(tmp_path / "d.yaml", {"loader": "synthetic", "num_classes": 2, "per_class": 10})
    assert main(["prepare", str(config), str(tmp_path / "prep"), "--image-size", "12"]) == 0
    manifest = json.loads((tmp_path / "prep" / "manifest.json").read_text())
    assert manifest["image_size"] == [12, 12]
    assert np.load(tmp_path / "prep" / "train_x.npy").shape[1:] == (12, 12, 3)


def test_prepare_bad_loader(tmp_path, capsys):
    config = write(tmp_path / "d.yaml", {"loader": "imagenet21k"})
    assert main(["prepare", str(config), str(tmp_path / "prep"), "--image-size", "12"]) == 2
    assert "imagenet21k" in capsys.readouterr().err


def test_features(tiny_prepared, tmp_path):
    source = write(tmp_path / "s.yaml", tiny_spec(tiny_prepared, training={"epochs": 1}))
    assert main(["run", str(source), str(tmp_path / "source")]) == 0
    spec = tiny_spec(tiny_prepared, "feature_extraction")
    spec["backbone"]["weights"] = {"run": str(tmp_path / "source")}
    path = write(tmp_path / "f.yaml", spec)
    assert main(["features", str(path), str(tmp_path / "cache")]) == 0
    assert (tmp_path / "cache" / "key.json").is_file()
    assert np.load(tmp_path / "cache" / "val.npy").shape[0] > 0
