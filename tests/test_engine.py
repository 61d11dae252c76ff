"""The engine end to end on the tiny generated dataset (seconds per run)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import yaml
from engine_helpers import SplitRecorder, tiny_spec

from tlbench import cli
from tlbench.analysis import runs
from tlbench.core import run_folder
from tlbench.core.errors import SpecError
from tlbench.datasets import load_prepared
from tlbench.models import inputs
from tlbench.models.augment import AUGMENTATIONS
from tlbench.training import engine, trainer

STRATEGY_PARAMS = {
    "scratch": {},
    "feature_extraction": {},
    "fine_tune": {},
    "two_phase": {"unfreeze": "block2", "phase1_epochs": 1, "phase2_epochs": 1},
    "freeze_bottom": {"frozen": "block1"},
    "discriminative_lr": {"decay": 0.5},
    "autoencoder": {"ae_epochs": 1},
    "lp_ft": {"grid": [0.01, 1.0]},
    "bitfit": {},
    "norm_only": {},
    "surgical": {"block": "auto", "trial_epochs": 1},
    "l2_sp": {"alpha": 0.1},
    "bss": {"k": 2},
}
METRIC_KEYS = {
    "status",
    "test",
    "val",
    "train",
    "per_class_accuracy",
    "confusion_matrix",
    "classes",
    "train_seconds",
    "inference_images_per_second",
    "epochs_run",
    "best_epoch",
    "params_total",
    "params_trainable",
    "spec",
    "environment",
    # the cost (tlbench.training.cost; every field: tests/test_cost.py)
    "forward_flops",
    "flops_seen",
    "train_images_per_second",
    "wall_seconds",
    "cpu_seconds",
    "peak_rss_mb",
}


@pytest.fixture(scope="module")
def source_run(tiny_prepared, tmp_path_factory):
    """A finished scratch run: the weight source of pretrained strategies."""
    out = tmp_path_factory.mktemp("source") / "run"
    engine.run(tiny_spec(tiny_prepared), out)
    return out


def read_history(outdir):
    with open(outdir / "history.csv") as handle:
        return list(csv.DictReader(handle))


def check_outputs(outdir, metrics):
    assert METRIC_KEYS <= set(metrics)
    assert metrics["forward_flops"] > 0, metrics.get("flops_note")  # every strategy's model
    assert json.loads((outdir / "metrics.json").read_text())["status"] == "ok"
    assert json.loads((outdir / "classes.json").read_text()) == metrics["classes"]
    preds = np.load(outdir / "predictions.npz")
    assert preds["y_prob"].shape == (metrics["test"]["n"], len(metrics["classes"]))
    np.testing.assert_allclose(preds["y_prob"].sum(axis=1), 1.0, atol=1e-4)
    # the validation labels it predicted (the evidence of a measured study): their
    # accuracy is the validation accuracy the run reports
    val_true, val_pred = preds["val_y_true"], preds["val_y_pred"]
    assert val_pred.shape == (metrics["val"]["n"],)
    assert np.mean(val_true == val_pred) == pytest.approx(metrics["val"]["accuracy"])
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
    assert metrics["inference_images_per_second"] > 0


@pytest.mark.parametrize("name", sorted(STRATEGY_PARAMS))
def test_every_strategy_runs(tiny_prepared, source_run, tmp_path, name):
    spec = tiny_spec(tiny_prepared, name)
    spec["strategy"]["params"] = STRATEGY_PARAMS[name]
    if name != "scratch" and name != "autoencoder":
        spec["backbone"]["weights"] = {"run": str(source_run)}
    out = tmp_path / name
    metrics = engine.run(spec, out)
    check_outputs(out, metrics)
    assert metrics["spec"]["strategy"]["name"] == name
    history = read_history(out)
    assert len(history) == metrics["epochs_run"] >= 1
    if name == "feature_extraction":
        assert metrics["params_trainable"] == sum(
            int(np.prod(w.shape))
            for w in keras.saving.load_model(out / "model.keras").get_layer("head").weights
        )
        assert metrics["features"]["source"] == "memory"
    if name == "two_phase":
        assert [row["phase"] for row in history] == ["phase1", "phase2"]
        assert float(history[1]["learning_rate"]) == pytest.approx(1e-4)
    if name == "autoencoder":
        assert [row["phase"] for row in history] == ["ae_stage1", "ae_stage2", "train", "train"]
        rec = np.load(out / "reconstructions.npz")
        assert set(rec.files) == {"images", "stage1", "stage2"}
        assert rec["stage1"].shape == rec["images"].shape == (4, 16, 16, 3)
        assert 0 <= rec["stage2"].min() and rec["stage2"].max() <= 255
    if name == "surgical":  # two blocks tried for an epoch each, then the chosen one trains
        assert [row["phase"] for row in history] == ["try_block1", "try_block2"] + ["train"] * 2
        assert metrics["surgical"]["block"] in ("block1", "block2")
    if name != "scratch" and name != "autoencoder":
        assert metrics["pretrained"] is True


def test_direct_maps_classes(tiny_prepared, source_run, tmp_path):
    spec = tiny_spec(tiny_prepared, "direct")
    spec["backbone"]["weights"] = {"run": str(source_run)}
    metrics = engine.run(spec, tmp_path / "direct")
    check_outputs(tmp_path / "direct", metrics)
    assert metrics["epochs_run"] == 0 and metrics["params_trainable"] == 0
    # The source run has the same classes: the majority mapping is mostly the identity.
    assert set(metrics["direct_mapping"]) == set(metrics["classes"])
    assert read_history(tmp_path / "direct") == []


def test_model_keras_reproduces_predictions(tiny_prepared, source_run):
    from tlbench.datasets import load_prepared

    model = keras.saving.load_model(source_run / "model.keras")
    assert model.get_layer("backbone").name == "backbone"
    x_test, _ = load_prepared(tiny_prepared).split("test")
    prob = model.predict(np.asarray(x_test, np.float32), verbose=0)
    np.testing.assert_allclose(prob, np.load(source_run / "predictions.npz")["y_prob"], atol=1e-4)


def test_metrics_and_history_contents(tiny_prepared, tmp_path):
    spec = tiny_spec(
        tiny_prepared,
        training={
            "epochs": 3,
            "optimizer": "sgd",
            "learning_rate": 0.1,
            "schedule": {"name": "step", "step_epochs": 1, "gamma": 0.5},
        },
        run={"dataset": "tiny", "seed": 0},
    )
    metrics = engine.run(spec, tmp_path / "out")
    history = read_history(tmp_path / "out")
    assert list(history[0]) == list(run_folder.HISTORY_COLUMNS)
    assert [int(r["epoch"]) for r in history] == [1, 2, 3]
    assert [float(r["learning_rate"]) for r in history] == pytest.approx([0.1, 0.05, 0.025])
    assert all(r["val_accuracy"] != "" and float(r["seconds"]) > 0 for r in history)
    assert metrics["best_epoch"] == 3  # no early stopping: the last epoch is kept
    assert metrics["run"] == {"dataset": "tiny", "seed": 0}
    assert metrics["spec"]["training"]["input_size"] == 16
    assert metrics["environment"]["keras"] == keras.__version__
    # training.jit_compile: auto, resolved: a tiny fit is below compute.XLA_MIN_IMAGE_EPOCHS,
    # so TensorFlow runs it without XLA; JAX always jits
    auto = keras.backend.backend() == "jax"
    assert metrics["environment"]["jit_compile"] == {
        "setting": "auto",
        "resolved": auto,
        "model": auto,
    }
    assert len(metrics["confusion_matrix"]) == 3


# Early stopping's restore of the best epoch: test_strategy_behaviour.py
# (test_early_stopping_restores_the_best_epoch_not_the_last, a run that peaks early).


def test_nan_run_is_failed(tiny_prepared, tmp_path):
    spec = tiny_spec(tiny_prepared, training={"optimizer": "sgd", "learning_rate": 1e30})
    metrics = engine.run(spec, tmp_path / "nan")
    saved = json.loads((tmp_path / "nan" / "metrics.json").read_text())
    assert saved["status"] == "failed" == metrics["status"]
    assert "epoch 1" in saved["reason"] and "phase 'train'" in saved["reason"]
    assert "test" not in saved and "accuracy" not in json.dumps(
        {k: v for k, v in saved.items() if k not in ("spec", "environment")}
    ).replace("val_accuracy", "")
    assert not (tmp_path / "nan" / "model.keras").exists()


def test_test_split_read_once_at_the_end(tiny_prepared, tmp_path, monkeypatch):
    events = []
    real_load = inputs.load_prepared

    real_fit = trainer.Trainer.fit

    def fit(self, model, phase, *args, **kwargs):
        events.append(("fit", phase.name))
        stop = self.spec["training"]["early_stopping"]
        assert stop is None or stop["monitor"].startswith("val_")
        return real_fit(self, model, phase, *args, **kwargs)

    monkeypatch.setattr(
        engine, "load_prepared", lambda path: SplitRecorder(real_load(path), events)
    )
    monkeypatch.setattr(trainer.Trainer, "fit", fit)
    spec = tiny_spec(
        tiny_prepared,
        "two_phase",
        training={"early_stopping": {"patience": 2, "monitor": "val_accuracy"}},
    )
    spec["strategy"]["params"] = {"unfreeze": 4}
    engine.run(spec, tmp_path / "out")
    assert events.count(("split", "test")) == 1
    assert events[-1] == ("split", "test")
    assert [e for e in events if e[0] == "fit"] == [("fit", "phase1"), ("fit", "phase2")]


def test_every_augmentation_preset_runs(tiny_prepared, tmp_path):
    for name in AUGMENTATIONS.names():
        spec = tiny_spec(tiny_prepared, augmentation={"name": name}, training={"epochs": 1})
        spec["backbone"]["kwargs"] = {"widths": [4]}
        metrics = engine.run(spec, tmp_path / name)
        assert metrics["status"] == "ok", name
        model = keras.saving.load_model(tmp_path / name / "model.keras")
        assert (name == "none") != ("augmentation" in [layer.name for layer in model.layers])


def test_resize_and_min_size(tiny_prepared, tmp_path):
    spec = tiny_spec(
        tiny_prepared, training={"epochs": 1, "input_size": 32, "interpolation": "bicubic"}
    )
    engine.run(spec, tmp_path / "up")
    model = keras.saving.load_model(tmp_path / "up" / "model.keras")
    assert model.get_layer("resize").interpolation == "bicubic"
    assert model.get_layer("backbone").input_shape == (None, 32, 32, 3)
    spec = tiny_spec(tiny_prepared, training={"input_size": 8})
    spec["backbone"]["kwargs"] = {"widths": [4, 4, 4, 4]}
    with pytest.raises((SpecError, ValueError), match="8"):
        engine.run(spec, tmp_path / "small")
    assert not (tmp_path / "small").exists()


def test_mixed_precision_run(tiny_prepared, tmp_path):
    spec = tiny_spec(tiny_prepared, training={"epochs": 1, "mixed_precision": True})
    metrics = engine.run(spec, tmp_path / "mp")
    assert metrics["status"] == "ok"
    assert keras.config.dtype_policy().name == "float32"  # restored afterwards
    preds = np.load(tmp_path / "mp" / "predictions.npz")["y_prob"]
    assert np.isfinite(preds).all()


def _cli(spec_path, out):
    """``tlbench run`` in a subprocess (to be killed), its output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "tlbench.cli", "run", str(spec_path), str(out), "--threads", "1"],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_killed_run_leaves_nothing_and_rerun_completes(tiny_prepared, tmp_path):
    spec = tiny_spec(tiny_prepared, training={"epochs": 500})
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "run"
    proc = _cli(spec_path, out)
    deadline = time.time() + 240
    for line in proc.stdout:
        if line.startswith("Epoch 2/") or time.time() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    spec["training"]["epochs"] = 1
    spec_path.write_text(yaml.safe_dump(spec))
    # the rerun: `tlbench run`'s entry point in this process (no second TensorFlow start)
    assert cli.main(["run", str(spec_path), str(out)]) == 0
    assert {"metrics.json", "history.csv", "model.keras", "predictions.npz", "classes.json"} <= {
        p.name for p in out.iterdir()
    }


# On the JAX backend: tests/test_jax_backend.py::test_jax_backend_run.


def test_imagenet_backbone_feature_extraction(tiny_prepared, tmp_path, keras_home):
    """A keras.applications backbone with real ImageNet weights, resized 16 -> 32 px."""
    spec = tiny_spec(tiny_prepared, "feature_extraction", training={"epochs": 1, "input_size": 32})
    spec["backbone"] = {"name": "MobileNetV2", "weights": "imagenet", "kwargs": {"alpha": 0.35}}
    metrics = engine.run(spec, tmp_path / "mnv2")
    assert metrics["status"] == "ok" and metrics["pretrained"] is True
    model = keras.saving.load_model(tmp_path / "mnv2" / "model.keras")
    assert (
        model.get_layer("backbone").count_params() + model.get_layer("head").count_params()
        == (metrics["params_total"])
    )
    assert metrics["params_trainable"] == model.get_layer("head").count_params()


def test_a_strategy_unit_trains_through_the_context_alone(tiny_prepared, tmp_path, monkeypatch):
    """A strategy registered outside the engine: the engine builds the model, hands it
    over in a TrainContext without the test split, and writes what TrainResult says."""
    from tlbench.strategies.base import STRATEGIES, Strategy

    seen = {}

    class Untrained(Strategy):
        name = "untrained_probe_of_the_interface"

        def train(self, ctx):
            seen["splits"] = sorted(ctx.splits)
            seen["built"] = ctx.built is not None
            row = {"epoch": 1, "phase": "none", "loss": 0.5}
            return ctx.result(
                ctx.built.model,
                history=[row],
                best_epoch=1,
                pretrained=False,
                extras={"untrained": True},
                arrays={"extra.npz": {"a": np.arange(3)}},
            )

    monkeypatch.setitem(STRATEGIES._items, Untrained.name, Untrained)
    out = tmp_path / "out"
    metrics = engine.run(tiny_spec(tiny_prepared, Untrained.name), out)
    assert seen == {"splits": ["train", "val"], "built": True}
    assert metrics["untrained"] is True and metrics["pretrained"] is False
    assert metrics["epochs_run"] == 1 and metrics["best_epoch"] == 1
    assert read_history(out) == [
        {
            "epoch": "1",
            "phase": "none",
            "loss": "0.5",
            "accuracy": "",
            "val_loss": "",
            "val_accuracy": "",
            "learning_rate": "",
            "seconds": "",
        }
    ]
    np.testing.assert_array_equal(np.load(out / "extra.npz")["a"], np.arange(3))
    assert metrics["test"]["n"] == len(np.load(tiny_prepared / "test_y.npy"))


def test_grouped_images_reach_metrics_and_predictions(tiny_prepared, tmp_path):
    """A dataset whose validation and test images come in groups: metrics.json counts the
    validation groups (the study table's val_groups: selection's standard error) and
    predictions.npz holds the test images' group ids (the verdict resamples them)."""
    prepared = tmp_path / "grouped"
    shutil.copytree(tiny_prepared, prepared)
    data = load_prepared(prepared)
    for split in ("val", "test"):
        n = data.counts[split]
        np.save(prepared / f"{split}_groups.npy", np.array([f"g{i // 4}" for i in range(n)]))
    metrics = engine.run(tiny_spec(prepared, run={"dataset": "tiny", "seed": 0}), tmp_path / "o")
    assert metrics["val"]["groups"] == -(-data.counts["val"] // 4)
    assert "groups" not in metrics["train"]
    groups = runs.read_groups(tmp_path / "o")
    assert groups.tolist() == [f"g{i // 4}" for i in range(data.counts["test"])]
    row = runs.collect_runs([tmp_path / "o" / "metrics.json"]).iloc[0]
    assert row["val_groups"] == metrics["val"]["groups"]
