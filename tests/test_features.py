"""Frozen-backbone feature cache: compute, reuse, key mismatch, spot check."""

from __future__ import annotations

import json

import numpy as np
import pytest
from engine_helpers import tiny_spec

from tlbench.core.errors import SpecError
from tlbench.models import inputs
from tlbench.training import engine, feature_cache


@pytest.fixture(scope="module")
def source_run(tiny_prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("source") / "run"
    engine.run(tiny_spec(tiny_prepared, training={"epochs": 1}), out)
    return out


def fe_spec(tiny_prepared, source_run, cache=None, **training):
    spec = tiny_spec(tiny_prepared, "feature_extraction", training={"epochs": 2, **training})
    spec["backbone"]["weights"] = {"run": str(source_run)}
    spec["features_cache"] = None if cache is None else str(cache)
    return spec


def features_spec(tiny_prepared, source_run):
    return {
        "dataset": {"name": "tiny", "prepared": str(tiny_prepared)},
        "backbone": {**tiny_spec(tiny_prepared)["backbone"], "weights": {"run": str(source_run)}},
        "training": {"batch_size": 16, "input_size": None, "interpolation": "bilinear"},
    }


def test_compute_then_reuse_in_a_run(tiny_prepared, source_run, tmp_path):
    cache = feature_cache.compute(features_spec(tiny_prepared, source_run), tmp_path / "cache")
    key = json.loads((cache / "key.json").read_text())
    train = np.load(cache / "train.npy")
    assert train.dtype == np.float32 and train.shape[1] == 16  # small_cnn widths [8, 16], pooled
    assert key["fields"]["input_size"] == 16
    assert "run_model_sha256" in key["fields"]["backbone"]["weights"]
    # computing again keeps the matching cache
    mtime = (cache / "train.npy").stat().st_mtime
    feature_cache.compute(features_spec(tiny_prepared, source_run), cache)
    assert (cache / "train.npy").stat().st_mtime == mtime

    cached = engine.run(fe_spec(tiny_prepared, source_run, cache), tmp_path / "cached")
    memory = engine.run(fe_spec(tiny_prepared, source_run), tmp_path / "memory")
    assert cached["features"]["source"] == "cache" and cached["features"]["key"] == key["sha256"]
    assert memory["features"]["source"] == "memory"
    np.testing.assert_allclose(
        np.load(tmp_path / "cached" / "predictions.npz")["y_prob"],
        np.load(tmp_path / "memory" / "predictions.npz")["y_prob"],
        atol=1e-3,
    )


def test_run_fills_an_absent_cache(tiny_prepared, source_run, tmp_path):
    first = engine.run(fe_spec(tiny_prepared, source_run, tmp_path / "c"), tmp_path / "r1")
    assert first["features"]["source"] == "computed" and (tmp_path / "c" / "key.json").is_file()
    second = engine.run(fe_spec(tiny_prepared, source_run, tmp_path / "c"), tmp_path / "r2")
    assert second["features"]["source"] == "cache"
    # fit_seconds: the head's fit alone, without computing or loading the features
    for metrics in (first, second):
        assert 0 < metrics["fit_seconds"] < metrics["train_seconds"]


def test_two_phase_uses_the_cache_in_phase1(tiny_prepared, source_run, tmp_path):
    spec = fe_spec(tiny_prepared, source_run, tmp_path / "c")
    spec["strategy"] = {"name": "two_phase", "params": {"unfreeze": 3}}
    metrics = engine.run(spec, tmp_path / "run")
    assert metrics["features"]["source"] == "computed"
    assert metrics["epochs_run"] == 2
    assert "fit_seconds" not in metrics  # phase 2 trains on images: no head-only fit time


def test_train_val_metrics_from_cached_features_equal_the_saved_models(
    tiny_prepared, source_run, tmp_path
):
    import keras

    from tlbench.training.metrics import classification_metrics

    metrics = engine.run(fe_spec(tiny_prepared, source_run, tmp_path / "c"), tmp_path / "run")
    assert metrics["train_val_predicted_from"] == "cached features"
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    data = inputs.load_prepared(tiny_prepared)
    for split in ("train", "val"):
        x, y = data.split(split)
        prob = model.predict(x, verbose=0)
        assert metrics[split]["accuracy"] == pytest.approx(float(np.mean(prob.argmax(1) == y)))
        assert metrics[split]["loss"] == pytest.approx(
            classification_metrics(y, prob, metrics["classes"])["loss"], abs=1e-4
        )


def test_a_phase_on_images_predicts_train_val_from_images(tiny_prepared, source_run, tmp_path):
    spec = fe_spec(tiny_prepared, source_run, tmp_path / "c")
    spec["strategy"] = {
        "name": "two_phase",
        "params": {"unfreeze": 3},
    }  # phase 2 trains the backbone
    assert engine.run(spec, tmp_path / "run")["train_val_predicted_from"] == "images"


def test_key_mismatch_is_an_error(tiny_prepared, source_run, tmp_path):
    feature_cache.compute(features_spec(tiny_prepared, source_run), tmp_path / "c")
    spec = fe_spec(tiny_prepared, source_run, tmp_path / "c", input_size=32)
    with pytest.raises(SpecError, match="holds features with key .* but this run needs key"):
        engine.run(spec, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_spot_check_catches_wrong_features(tiny_prepared, source_run, tmp_path):
    cache = feature_cache.compute(features_spec(tiny_prepared, source_run), tmp_path / "c")
    np.save(cache / "train.npy", np.load(cache / "train.npy") + 1.0)
    with pytest.raises(SpecError, match="disagrees with this run's backbone"):
        engine.run(fe_spec(tiny_prepared, source_run, cache), tmp_path / "run")


def test_random_weights_are_not_cached(tiny_prepared, source_run, tmp_path):
    spec = features_spec(tiny_prepared, source_run)
    spec["backbone"]["weights"] = "none"
    with pytest.raises(SpecError, match="cannot be cached"):
        feature_cache.compute(spec, tmp_path / "c")
    run_spec = fe_spec(tiny_prepared, source_run, tmp_path / "c2")
    run_spec["backbone"]["weights"] = "none"
    metrics = engine.run(run_spec, tmp_path / "run")
    assert metrics["features"]["source"] == "memory" and "note" in metrics["features"]
    assert not (tmp_path / "c2").exists()


def test_seeded_random_weights_are_cached(tiny_prepared, source_run, tmp_path):
    """{random: SEED}: the run computes the cache, a run of another seed reads it (the
    backbone is SEED's, not the run's), and `tlbench features` keeps it; SEED is in the key."""
    spec = fe_spec(tiny_prepared, source_run, tmp_path / "c")
    spec["backbone"]["weights"] = {"random": 0}
    first = engine.run(spec, tmp_path / "r1")
    assert first["features"]["source"] == "computed" and first["pretrained"] is False
    key = json.loads((tmp_path / "c" / "key.json").read_text())
    assert key["fields"]["backbone"]["weights"]["random"] == 0
    second = engine.run({**spec, "seed": 3}, tmp_path / "r2")  # spot check: same backbone
    assert second["features"]["source"] == "cache" and second["features"]["key"] == key["sha256"]
    cached = feature_cache.compute(
        {**features_spec(tiny_prepared, source_run), "backbone": spec["backbone"]}, tmp_path / "c"
    )
    assert json.loads((cached / "key.json").read_text()) == key
    other = features_spec(tiny_prepared, source_run)
    other["backbone"]["weights"] = {"random": 1}
    with pytest.raises(SpecError, match="holds features with key"):
        feature_cache.compute(other, tmp_path / "c")


def test_features_spec_unknown_key(tiny_prepared, source_run, tmp_path):
    spec = features_spec(tiny_prepared, source_run)
    spec["training"]["epochs"] = 3
    with pytest.raises(SpecError, match="training.epochs: unknown key"):
        feature_cache.compute(spec, tmp_path / "c")


def test_the_cache_serves_each_seeds_own_budget_subset(tiny_prepared, source_run, tmp_path):
    """Budget subsets are drawn from the run's seed: two seeds at 2 per class read
    different rows of one cache (its key names neither budget nor seed), each its own
    subset (the spot check of the cached rows against the run's images passes), and
    each run records the seed its subset was drawn from."""
    metrics = {}
    for seed in (0, 1):
        spec = fe_spec(tiny_prepared, source_run, tmp_path / "cache")
        spec["dataset"]["budget"] = 2
        spec["seed"] = seed
        metrics[seed] = engine.run(spec, tmp_path / f"seed{seed}")
    assert [metrics[s]["features"]["source"] for s in (0, 1)] == ["computed", "cache"]
    assert [metrics[s]["budget_seed"] for s in (0, 1)] == [0, 1]


def test_one_cache_serves_every_label_budget(tiny_prepared, source_run, tmp_path, monkeypatch):
    """Two budgets' runs on one (dataset, backbone) cache: the backbone sees every train
    and val image once (in the first run), and each run's head trains on its budget's rows."""
    from tlbench.models.inputs import load_prepared

    passes: list[int] = []
    real_extract = feature_cache.extract

    def counting_extract(extractor, x, batch_size):
        passes.append(len(x))
        return real_extract(extractor, x, batch_size)

    monkeypatch.setattr(feature_cache, "extract", counting_extract)
    counts = load_prepared(tiny_prepared).counts
    metrics = {}
    for k in (2, 5):
        spec = fe_spec(tiny_prepared, source_run, tmp_path / "cache")
        spec["dataset"]["budget"] = k
        metrics[k] = engine.run(spec, tmp_path / f"n{k}")
    assert passes == [counts["train"], counts["val"]]
    assert [metrics[k]["features"]["source"] for k in (2, 5)] == ["computed", "cache"]
    assert [metrics[k]["features"]["budget_rows"] for k in (2, 5)] == [6, 15]
    assert len(np.load(tmp_path / "cache" / "train.npy")) == counts["train"]
    for k in (2, 5):
        assert metrics[k]["budget"] == f"n{k}"
        assert set(metrics[k]["budget_per_class_used"].values()) == {k}
        # validation is the whole split for every budget
        assert sum(map(sum, metrics[k]["val"]["confusion_matrix"])) == counts["val"]
