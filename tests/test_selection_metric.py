"""``selection.metric``: what chooses (accuracy, balanced accuracy, macro-F1, ROC AUC),
checked at parse time and followed by the selection, early stopping, tuning and the
verdict (issue 32, item 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_study import base_config

from tlbench.analysis import criteria, runs, selection, tables
from tlbench.analysis.verdict.assess import assess
from tlbench.analysis.verdict.bootstrap import bootstrap_labels
from tlbench.core.errors import StudyConfigError, TuningError
from tlbench.study.load import load_study
from tlbench.training.metrics import classification_metrics

ROOT = Path(__file__).resolve().parents[1]


def _spec_monitor(config: dict, strategy: str = "feature_extraction") -> str:
    study = load_study(config)
    run = next(r for r in study.runs if r.strategy == strategy)
    return study.run_spec(run)["training"]["early_stopping"]["monitor"]


def test_selection_defaults_to_auto_and_leaves_early_stopping_alone():
    study = load_study(base_config())
    assert study.config["selection"] == {"metric": "auto"}
    assert _spec_monitor(base_config()) == "val_accuracy"


def test_bad_metric_name_is_an_error_naming_it():
    config = base_config()
    config["selection"] = {"metric": "f1"}
    with pytest.raises(StudyConfigError) as info:
        load_study(config)
    assert "selection.metric: 'f1' is not valid" in str(info.value)
    assert "balanced_accuracy" in str(info.value)


def test_roc_auc_is_refused_where_a_dataset_has_more_than_two_classes():
    config = base_config()
    config["selection"] = {"metric": "roc_auc"}
    with pytest.raises(StudyConfigError) as info:
        load_study(config)
    text = str(info.value)
    assert "selection.metric: 'roc_auc'" in text
    assert "datasets.digits has 10 classes" in text and "datasets.gtsrb has 43" in text
    config["datasets"] = {
        "ants": {"loader": "hymenoptera", "image_size": 32},
        "fractal": config["datasets"]["fractal"],
    }
    config["backbones"]["cnn_fractal"]["weights"]["pretrain"]["dataset"] = "fractal"
    for block in config["matrix"]:
        block["datasets"] = ["ants"]
    config["datasets"]["fractal"]["num_classes"] = 2  # the pretraining source too
    assert load_study(config).config["selection"]["metric"] == "roc_auc"


def test_the_metric_sets_early_stoppings_monitor_unless_a_section_names_one():
    config = base_config()
    config["selection"] = {"metric": "balanced_accuracy"}
    assert _spec_monitor(config) == "val_balanced_accuracy"
    config["strategies"]["feature_extraction"]["training"] = {"early_stopping": {"patience": 2}}
    assert _spec_monitor(config) == "val_balanced_accuracy"
    config["strategies"]["feature_extraction"]["training"] = {
        "early_stopping": {"patience": 2, "monitor": "val_loss"}
    }
    assert _spec_monitor(config) == "val_loss"
    config["training"]["early_stopping"] = {"monitor": "val_accuracy", "patience": 3}
    assert _spec_monitor(config, "scratch") == "val_accuracy"
    config["selection"] = {"metric": "macro_f1"}
    del config["training"]["early_stopping"]
    assert _spec_monitor(config, "scratch") == "val_macro_f1"


# --------------------------------------------------------------------------- choosing


def _labels(sizes: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(sizes)), sizes)


def _guess(y: np.ndarray, recall: list[float], rng: np.random.Generator) -> np.ndarray:
    """Predictions with the given recall per class; misses go to class 0 (or 1 for class 0)."""
    predicted = y.copy()
    for k, share in enumerate(recall):
        where = np.flatnonzero(y == k)
        missed = rng.permutation(where)[: round((1 - share) * len(where))]
        predicted[missed] = 1 if k == 0 else 0
    return predicted


def write_imbalanced_study(root: Path, seeds: int = 2) -> pd.DataFrame:
    """Two cells on an imbalanced three-class dataset (80/15/5 images in val and test):
    ``majority`` nearly always says the large class (accuracy ~0.83, balanced ~0.49),
    ``balanced`` gets ~75 % of every class (accuracy ~0.75, balanced ~0.75)."""
    classes = ["big", "mid", "small"]
    y = _labels([80, 15, 5])
    recalls = {"majority": [1.0, 0.2, 0.0], "balanced": [0.75, 0.8, 0.8]}
    paths = []
    for strategy, recall in recalls.items():
        for seed in range(seeds):
            rng = np.random.default_rng(seed + 10 * len(strategy))
            folder = root / "d" / "b" / strategy / "none" / f"seed{seed}"
            folder.mkdir(parents=True)
            split = {}
            for name in ("val", "test"):
                predicted = _guess(y, recall, rng)
                prob = np.full((len(y), 3), 0.05)
                prob[np.arange(len(y)), predicted] = 0.9
                split[name] = (classification_metrics(y, prob, classes), prob)
            np.savez_compressed(folder / "predictions.npz", y_true=y, y_prob=split["test"][1])
            metrics = {
                "status": "ok",
                "run": {"dataset": "d", "backbone": "b", "strategy": strategy,
                        "augmentation": "none", "seed": seed},
                "classes": classes, "pretrained": True, "train_seconds": 1.0,
                "val": split["val"][0], "test": split["test"][0],
            }  # fmt: skip
            (folder / "metrics.json").write_text(json.dumps(metrics))
            paths.append(folder / "metrics.json")
    return runs.collect_runs(paths)


def test_balanced_accuracy_chooses_another_cell_than_accuracy_on_imbalanced_data(tmp_path):
    """The issue's acceptance: ``selection.metric: balanced_accuracy`` changes the choice
    of the run, the cell and the verdict's selected cell on an imbalanced set."""
    study = write_imbalanced_study(tmp_path)
    accuracy = criteria.with_metric(study, "accuracy")
    balanced = criteria.with_metric(study, "balanced_accuracy")
    assert selection.select_cell(study).cell[2] == "majority"  # auto: accuracy (3 classes)
    assert selection.select_cell(accuracy).cell[2] == "majority"
    assert selection.select_run(accuracy).cell[2] == "majority"
    chosen = selection.select_cell(balanced)
    assert chosen.cell[2] == "balanced" and chosen.criterion == "val_balanced_accuracy"
    assert chosen.label == "validation balanced accuracy"
    assert chosen.standard_error is not None  # from the validation class counts
    assert selection.select_run(balanced).cell[2] == "balanced"
    assert selection.select_cell(criteria.with_metric(study, "macro_f1")).cell[2] == "balanced"

    by_accuracy = assess(accuracy, reps=300).cells
    by_balanced = assess(balanced, reps=300).cells
    assert by_accuracy["strategy"].iloc[0] == "majority"
    assert by_accuracy["compared"].iloc[0] == "accuracy"
    top = by_balanced.iloc[0]
    assert top["strategy"] == "balanced" and top["compared"] == "balanced_accuracy"
    assert top["criterion"] == "val_balanced_accuracy"
    expected = study[study["strategy"] == "balanced"]["test_balanced_accuracy"].mean()
    assert top["test_value"] == pytest.approx(expected)
    other = by_balanced.iloc[1]  # majority: far worse in balanced accuracy
    assert other["difference"] == pytest.approx(
        study[study["strategy"] == "majority"]["test_balanced_accuracy"].mean() - expected
    )
    assert other["verdict"] == "worse" and other["diff_high"] < 0


def test_roc_auc_on_a_multiclass_table_is_an_error_naming_it(tmp_path):
    study = criteria.with_metric(write_imbalanced_study(tmp_path, seeds=1), "roc_auc")
    with pytest.raises(ValueError, match="'roc_auc' is for two-class datasets.*3 classes"):
        selection.select_cell(study)
    with pytest.raises(ValueError, match="selection.metric 'f1'"):
        criteria.with_metric(study, "f1")


# --------------------------------------------------------------------------- the bootstrap


def test_bootstrap_of_balanced_accuracy_has_sklearns_point_and_recomputes_each_replicate():
    from sklearn.metrics import balanced_accuracy_score, f1_score

    rng = np.random.default_rng(3)
    y = _labels([60, 25, 15])
    cells = [
        np.vstack([_guess(y, [0.95, 0.3, 0.1], rng) for _ in range(3)]),
        np.vstack([_guess(y, [0.7, 0.7, 0.7], rng) for _ in range(3)]),
    ]
    for metric, score in (("balanced_accuracy", balanced_accuracy_score),
                          ("macro_f1", lambda t, p: f1_score(t, p, average="macro"))):  # fmt: skip
        reps = bootstrap_labels(y, cells, metric, reps=400, rng=0)
        expected = [np.mean([score(y, p) for p in m]) for m in cells]
        assert reps.point == pytest.approx(expected)
        assert reps.values.mean(axis=0) == pytest.approx(expected, abs=0.02)
        assert 0.01 < reps.values[:, 0].std() < 0.1  # the images were resampled
        grouped = bootstrap_labels(y, cells, metric, reps=200, rng=0, groups=np.arange(100) // 5)
        assert grouped.units == 20 and grouped.images == 100  # whole groups drawn
        assert grouped.point == pytest.approx(expected)
    # a replicate is the metric of the drawn images: one image drawn n times -> its class only
    single = bootstrap_labels(np.array([0, 1]), [np.array([[0, 0]])], "balanced_accuracy",
                              reps=200, rng=1, stochastic=[False])  # fmt: skip
    assert set(np.round(single.values[:, 0], 6)) <= {0.0, 0.5, 1.0}
    assert {0.0, 1.0} <= set(np.round(single.values[:, 0], 6))
    assert single.point[0] == pytest.approx(0.5)


# --------------------------------------------------------------------------- tuning


class _Data:
    classes = ["big", "mid", "small"]

    def split(self, name):
        return np.zeros((4, 8, 8, 3), np.uint8), np.array([0, 0, 1, 2])


def test_tuning_objective_follows_the_selection_metric(tmp_path):
    import yaml

    from tlbench.tuning import search, space

    config = yaml.safe_load((ROOT / "configs/test/tuning_tiny.yaml").read_text())
    assert "metric" not in load_study(config).tuning_section("two_phase_tuned")  # auto
    config["selection"] = {"metric": "balanced_accuracy"}
    section = load_study(config).tuning_section("two_phase_tuned")
    assert section["metric"] == "balanced_accuracy"
    assert space.objective_name(3, section["metric"]) == "val_balanced_accuracy"
    assert space.objective_name(3) == "val_accuracy" and space.objective_name(2) == "val_roc_auc"
    state = search._Search({}, section, _Data(), tmp_path)
    assert state.objective == "val_balanced_accuracy"
    prob = np.eye(3)[[0, 0, 0, 2]] * 0.9 + 0.1 / 3  # recalls 1, 0, 1
    scores = state.score(np.array([0, 0, 1, 2]), prob)
    assert scores == pytest.approx({"val_accuracy": 0.75, "val_balanced_accuracy": 2 / 3})
    config["strategies"]["two_phase_tuned"]["tuning"]["metric"] = "f1"
    with pytest.raises(StudyConfigError, match="tuning.metric: 'f1' is not valid"):
        load_study(config)
    with pytest.raises(TuningError, match="'roc_auc' is for two classes"):
        space.objective_name(3, "roc_auc")


# --------------------------------------------------------------------------- early stopping


@pytest.mark.parametrize("monitor", ["val_balanced_accuracy", "val_macro_f1"])
def test_early_stopping_keeps_the_epoch_of_the_best_monitored_metric(monitor, monkeypatch):
    """The fit compiles the monitored metric; early stopping keeps the epoch where its
    validation figure was best, and that figure is scikit-learn's of the kept model."""
    import keras
    from sklearn.metrics import balanced_accuracy_score, f1_score

    from tlbench.strategies.base import Phase
    from tlbench.training import trainer
    from tlbench.training.spec import resolve_spec

    seen: list[float] = []

    class Recording(keras.callbacks.EarlyStopping):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(float(logs[monitor]))
            super().on_epoch_end(epoch, logs)

    monkeypatch.setattr(trainer.keras.callbacks, "EarlyStopping", Recording)
    spec = resolve_spec({
        "dataset": {"name": "d", "prepared": "unused"},
        "backbone": {"name": "small_cnn"},
        "strategy": {"name": "scratch"},
        "training": {"epochs": 8, "early_stopping": {"patience": 8, "monitor": monitor}},
    })  # fmt: skip
    rng = np.random.default_rng(0)
    y = _labels([120, 30, 10])
    x = (rng.normal(size=(len(y), 6)) + np.eye(3, 6)[y] * 1.5).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation="softmax")])
    fit = trainer.Trainer(spec)
    fit.fit(model, Phase("train", 8, 0.05), (x, y), (x[::2], y[::2]))
    assert len(seen) == 8 and len(set(np.round(seen, 6))) > 1
    assert fit.best_epoch == int(np.argmax(seen)) + 1
    predicted = model.predict(x[::2], verbose=0).argmax(axis=1)
    kept = (
        balanced_accuracy_score(y[::2], predicted)
        if monitor == "val_balanced_accuracy"
        else f1_score(y[::2], predicted, average="macro", zero_division=0)
    )
    assert kept == pytest.approx(max(seen), abs=1e-5)


# --------------------------------------------------------------------------- prepare


def test_folder_with_a_class_five_times_another_warns_at_prepare_naming_the_option(
    tmp_path, capsys
):
    from PIL import Image

    from tlbench.datasets import load_prepared, prepare
    from tlbench.datasets.folder import imbalance_warning

    assert imbalance_warning(["a", "b"], [19, 4]) is None  # 4.75x
    text = imbalance_warning(["a", "b", "c"], [20, 4, 7])  # 5x
    assert "'a' (20 images), has 5.0x the images of the smallest, 'b' (4)" in text
    rng = np.random.default_rng(0)
    for name, count in (("common", 25), ("rare", 5)):
        (tmp_path / "src" / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "src" / name / f"{i}.png")
    config = {"loader": "folder", "source": str(tmp_path / "src")}
    data = load_prepared(prepare(config, tmp_path / "p", image_size=8, seed=0))
    (warning,) = [w for w in data.manifest["warnings"] if "imbalanced" in w]
    assert "'common' (25 images), has 5.0x" in warning and "selection" in warning
    assert "balanced_accuracy" in warning
    assert "selection: {metric: balanced_accuracy}" in capsys.readouterr().err
    (tmp_path / "src" / "common" / "0.png").unlink()  # 24 against 5: 4.8x
    data = load_prepared(prepare(config, tmp_path / "q", image_size=8, seed=0))
    assert not [w for w in data.manifest["warnings"] if "imbalanced" in w]


# --------------------------------------------------------------------------- tables


def test_results_cell_table_shows_balanced_accuracy_and_macro_f1_where_recorded(tmp_path):
    from tlbench.report.pages import results

    study = write_imbalanced_study(tmp_path)
    table = results.cell_table(study).set_index("strategy")
    for column, words in (("test_balanced_accuracy", "test balanced accuracy"),
                          ("test_macro_f1", "test macro-F1")):  # fmt: skip
        values = study[study["strategy"] == "balanced"][column]
        assert table.loc["balanced", words] == tables.mean_sd(values)
    older = study.assign(test_balanced_accuracy=np.nan, test_macro_f1=np.nan)
    assert "test balanced accuracy" not in results.cell_table(older).columns


def test_a_selection_metric_added_to_tlbench_compares_config_sets_its_monitor():
    """``tlbench compare`` writes early stopping without a monitor, so the option the
    imbalance warning names reaches early stopping when a user adds it."""
    from test_compare import COSTS, summary

    from tlbench.study import compare, defaults
    from tlbench.study.config import validate_config

    chosen, _ = compare.plan(summary(30), list(defaults.IMAGENET[:1]), costs=COSTS)
    config = compare.study_config(summary(30), chosen)
    assert "monitor" not in validate_config(config)["training"]["early_stopping"]  # the spec's
    config["selection"] = {"metric": "balanced_accuracy"}
    stop = validate_config(config)["training"]["early_stopping"]
    assert stop["monitor"] == "val_balanced_accuracy"
