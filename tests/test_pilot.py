"""Pilot mode (the test split sealed) and the test-split ledger (tlbench.analysis.ledger)."""

from __future__ import annotations

import json
import multiprocessing
import shutil

import numpy as np
import pytest
import yaml
from engine_helpers import tiny_spec

from tlbench.analysis import ledger, lookcount
from tlbench.cli import main


@pytest.fixture
def sealed_prepared(tiny_prepared, tmp_path):
    """The tiny prepared dataset without its test split's files."""
    folder = tmp_path / "sealed"
    shutil.copytree(tiny_prepared, folder)
    for name in ("test_x.npy", "test_y.npy"):
        (folder / name).unlink()
    return folder


def test_pilot_run_never_opens_the_test_split(sealed_prepared, tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(sealed_prepared, training={"epochs": 1})))
    assert main(["run", str(spec), str(tmp_path / "runs" / "pilot"), "--pilot"]) == 0
    assert "pilot: test split sealed" in capsys.readouterr().out
    out = tmp_path / "runs" / "pilot"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["pilot"] is True and metrics["test"] is None
    assert metrics["spec"]["pilot"] is True
    val_y = np.load(sealed_prepared / "val_y.npy")
    assert metrics["val"]["n"] == len(val_y)
    assert np.asarray(metrics["confusion_matrix"]).sum() == len(val_y)  # the val split's
    with np.load(out / "predictions.npz") as saved:
        assert str(saved["split"]) == "val"
        np.testing.assert_array_equal(saved["y_true"], val_y)
    assert not (tmp_path / "runs" / ledger.NAME).exists()  # a pilot run adds no ledger line
    # without --pilot the same folder is an error naming the missing test files
    assert main(["run", str(spec), str(tmp_path / "runs" / "full")]) == 2
    assert "test_x.npy" in capsys.readouterr().err


def test_spec_hash_ignores_display_names_only():
    spec = {"dataset": {"name": "d"}, "seed": 0, "run": {"dataset": "x"}}
    assert ledger.spec_hash(spec) == ledger.spec_hash({**spec, "run": {"dataset": "y"}})
    assert ledger.spec_hash(spec) != ledger.spec_hash({**spec, "seed": 1})


def _append_many(path, worker, count):
    for i in range(count):
        ledger.append(path, {"dataset": "d", "prepared_fingerprint": "f", "spec_hash": f"{worker}-{i}",
                             "time_utc": "t", "code": {"pad": "x" * 5000}})  # fmt: skip


def test_concurrent_appends_keep_every_line_whole(tmp_path):
    path = tmp_path / ledger.NAME
    workers = [multiprocessing.Process(target=_append_many, args=(path, w, 50)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    lines = ledger.read(path)  # a torn or interleaved line would not parse
    assert len(lines) == 200 and len({line["spec_hash"] for line in lines}) == 200


def test_looks_count_distinct_specs_per_dataset(tiny_prepared, tmp_path):
    path = tmp_path / ledger.NAME
    for dataset, spec_hash, fingerprint in [("a", "1", "f"), ("a", "1", "f"), ("a", "2", "g"),
                                            ("b", "3", "f")]:  # fmt: skip
        ledger.append(path, {"dataset": dataset, "prepared_fingerprint": fingerprint,
                             "spec_hash": spec_hash, "time_utc": "t", "code": {}})  # fmt: skip
    prepared = {name: tiny_prepared for name in ("c", "a", "b")}
    counted = lookcount.count_looks(path, prepared)
    json.dumps(counted)  # the committed evidence stores it as it is
    table = lookcount.looks_table(counted).set_index("dataset")
    assert table.loc["a", "distinct run specs"] == 2 and table.loc["a", "test evaluations"] == 3
    assert table.loc["a", "prepared versions"] == 2 and table.loc["b", "distinct run specs"] == 1
    assert table.loc["c", "distinct run specs"] == 0
    assert list(table.index) == ["c", "a", "b"]
    assert lookcount.looks_table(lookcount.count_looks(tmp_path / "none.jsonl", {})).empty
    (tmp_path / "bad.jsonl").write_text('{"dataset": "a"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1: ledger line lacks prepared_fingerprint"):
        ledger.read(tmp_path / "bad.jsonl")
