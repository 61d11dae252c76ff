"""Tests of tlbench.analysis.tables with small fabricated metrics.json files (inputs, not results)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tlbench.analysis import runs as analysis_runs
from tlbench.analysis import tables
from tlbench.report import render


def fake_metrics(
    dataset: str = "ants",
    backbone: str = "mnv2",
    strategy: str = "fine_tune",
    augmentation: str = "none",
    seed: int = 0,
    *,
    test: float = 0.8,
    train: float = 0.9,
    loss: float = 0.5,
    seconds: float = 10.0,
    auc: float | None = 0.85,
    classes: tuple[str, ...] = ("a", "b"),
    status: str = "ok",
    with_run: bool = True,
) -> dict:
    """A metrics.json as the engine writes it (values are test inputs)."""
    spec = {
        "dataset": {"name": dataset, "prepared": f"results/prepared/{dataset}"},
        "backbone": {"name": "MobileNetV2", "weights": "imagenet", "kwargs": {"alpha": 0.35}},
        "strategy": {"name": strategy, "params": {}},
        "augmentation": {"name": "flip" if augmentation != "none" else "none"},
        "head": {"type": "gap_dense", "hidden": [], "dropout": 0.2},
        "seed": seed,
        "training": {"optimizer": "adam", "learning_rate": 1e-4, "batch_size": 32, "epochs": 5,
                     "schedule": {"name": "constant"}, "input_size": 96},
    }  # fmt: skip
    metrics = {"status": status, "spec": spec, "classes": list(classes),
               "environment": {"keras": "3.15.1", "backend": "tensorflow", "git_commit": "abc"}}  # fmt: skip
    if with_run:
        metrics["run"] = {"dataset": dataset, "backbone": backbone, "strategy": strategy,
                          "augmentation": augmentation, "seed": seed}  # fmt: skip
    if status == "failed":
        metrics["reason"] = "out of memory"
        return metrics
    metrics.update(
        test={"n": 100, "accuracy": test, "loss": loss, "roc_auc": auc},
        val={"n": 20, "accuracy": test + 0.01, "loss": loss - 0.01, "roc_auc": auc},
        train={"n": 300, "accuracy": train, "loss": loss / 2, "roc_auc": auc},
        train_seconds=seconds,
        inference_images_per_second=250.0,
        epochs_run=5,
        best_epoch=4,
        params_total=400000,
        params_trainable=2562,
        resumed=False,
    )
    return metrics


def write_runs(root: Path, runs: list[dict], prefix: str = "run") -> list[Path]:
    paths = []
    for i, metrics in enumerate(runs):
        path = root / f"{prefix}{i}" / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(metrics))
        paths.append(path)
    return paths


@pytest.fixture
def study(tmp_path) -> pd.DataFrame:
    runs = [
        fake_metrics(strategy="fine_tune", seed=0, test=0.80, train=0.90, loss=0.50, seconds=10),
        fake_metrics(strategy="fine_tune", seed=1, test=0.90, train=0.95, loss=0.30, seconds=14),
        fake_metrics(strategy="feature_extraction", seed=0, test=0.70, train=0.75, loss=0.60,
                     seconds=4, auc=0.95),
        fake_metrics(strategy="feature_extraction", seed=1, status="failed"),
        fake_metrics(strategy="scratch", seed=0, test=0.50, train=0.99, loss=2.0, seconds=30,
                     auc=0.5),
    ]  # fmt: skip
    return analysis_runs.collect_runs(write_runs(tmp_path, runs))


def test_collect_runs_one_row_per_run(study):
    assert len(study) == 5
    assert list(study.columns[:5]) == analysis_runs.ID_COLUMNS
    row = study[(study.strategy == "fine_tune") & (study.seed == 1)].iloc[0]
    assert row.test_accuracy == 0.90 and row.val_accuracy == pytest.approx(0.91)
    assert row.train_loss == pytest.approx(0.15)
    assert row.test_roc_auc == 0.85
    assert row.params_trainable == 2562 and row.epochs_run == 5
    assert row.backbone_arch == "MobileNetV2" and row.weights == "imagenet"
    assert row.learning_rate == 1e-4 and row.schedule == "constant" and row.head_type == "gap_dense"
    assert row.num_classes == 2 and row.status == "ok" and not row.resumed
    assert row.env_keras == "3.15.1" and row.env_git_commit == "abc"
    assert math.isnan(row.test_top5_accuracy)
    failed = study[study.status == "failed"].iloc[0]
    assert failed.reason == "out of memory"
    assert math.isnan(failed.test_accuracy) and math.isnan(failed.train_seconds)


def test_weights_column_labels_each_kind(tmp_path):
    runs = [fake_metrics(seed=i) for i in range(3)]
    runs[1]["spec"]["backbone"]["weights"] = {"run": "results/pretrained/cnn"}
    runs[2]["spec"]["backbone"]["weights"] = {"random": 4}
    table = analysis_runs.collect_runs(write_runs(tmp_path, runs))
    assert list(table.sort_values("seed").weights) == [
        "imagenet",
        "run:results/pretrained/cnn",
        "random(seed 4)",
    ]


def test_batchnorm_column(tmp_path):
    runs = []
    for policy in ("frozen", "train", None):
        metrics = fake_metrics(strategy=f"fine_tune_{policy}")
        if policy is not None:
            metrics["spec"]["strategy"]["params"]["batchnorm"] = policy
        runs.append(metrics)
    direct = fake_metrics(strategy="direct")
    direct["spec"]["strategy"]["name"] = "direct"
    df = analysis_runs.collect_runs(write_runs(tmp_path, [*runs, direct]))
    assert "batchnorm" in analysis_runs.SPEC_COLUMNS
    policy = df.set_index("strategy")["batchnorm"]
    assert policy["fine_tune_frozen"] == "frozen" and policy["fine_tune_train"] == "train"
    assert policy["fine_tune_None"] == "train"  # before the parameter: fine_tune trained BN
    assert pd.isna(policy["direct"])
    general = tables.general_table(df, "ants").set_index("Model name")["BatchNorm"]
    assert general["mnv2_fine_tune_frozen"] == "frozen" and general["mnv2_direct"] == ""


def write_history(run_dir: Path, rows: list[tuple[str, float]]) -> None:
    lines = ["epoch,phase,loss"] + [f"{i},{p},{x}" for i, (p, x) in enumerate(rows, 1)]
    (run_dir / "history.csv").write_text("\n".join(lines) + "\n")


def test_exploding_loss_is_flagged(tmp_path):
    runs = [fake_metrics(strategy=name) for name in ("exploded", "calm", "ae", "almost")]
    paths = write_runs(tmp_path, runs)
    write_history(paths[0].parent, [("phase1", 0.5), ("phase2", 5.0), ("phase2", 50.0)])
    write_history(paths[1].parent, [("train", 1.1), ("train", 0.2)])
    # autoencoder stages (an MSE) do not count: the classifier's loss went 0.9 -> 0.5
    write_history(paths[2].parent, [("ae_stage1", 0.001), ("train", 0.9), ("train", 0.5)])
    write_history(paths[3].parent, [("train", 1.0), ("train", 99.0)])
    df = analysis_runs.collect_runs(paths)
    row = df.set_index("strategy").loc["ae"]
    assert (row.history_loss_first, row.history_loss_last) == (0.9, 0.5)
    flagged = tables.flag_suspicious(df)
    assert list(flagged.strategy) == ["exploded"]
    reason = flagged.reason.iloc[0]
    assert "training loss exploded: 50 in the last epoch, 100x the first epoch's 0.5" in reason
    assert df.set_index("strategy").loc["exploded", "status"] == "ok"


def test_run_names_preferred_over_spec(tmp_path):
    with_names = fake_metrics(backbone="mnv2_a035", augmentation="flip_light")
    without = fake_metrics(with_run=False, strategy="two_phase")
    df = analysis_runs.collect_runs(write_runs(tmp_path, [with_names, without]))
    assert set(df.backbone) == {"mnv2_a035", "MobileNetV2"}
    assert set(df.augmentation) == {"flip_light", "none"}


def test_collect_runs_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        analysis_runs.collect_runs([tmp_path / "nope.json"])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        analysis_runs.collect_runs([bad])
    anonymous = tmp_path / "anon.json"
    anonymous.write_text(json.dumps({"status": "failed"}))
    with pytest.raises(ValueError, match="cannot tell the run's dataset"):
        analysis_runs.collect_runs([anonymous])


def test_mean_sd():
    assert tables.mean_sd([0.8, 0.9]) == "0.8500 ± 0.0707"
    assert tables.mean_sd([0.8]) == "0.8000"
    assert tables.mean_sd([float("nan")]) == ""
    assert tables.mean_sd([10.0, 14.0], 1) == "12.0 ± 2.8"


def test_general_table_mean_sd_and_best(study):
    table = tables.general_table(study, "ants")
    assert list(table.columns) == ["Model name", "BatchNorm", "Test accuracy", "Test loss",
                                   "Train accuracy", "Train loss", "Time_train (s)", "Runs"]  # fmt: skip
    by_name = table.set_index("Model name")
    # runs recorded without a batchnorm parameter: what their strategy did then
    assert by_name.loc["mnv2_feature_extraction", "BatchNorm"] == "frozen"
    assert by_name.loc["mnv2_fine_tune", "BatchNorm"] == "train"
    assert list(by_name.index) == [
        "mnv2_feature_extraction", "mnv2_fine_tune", "mnv2_scratch"]  # fmt: skip
    assert by_name.loc["mnv2_fine_tune", "Test accuracy"] == "0.8500 ± 0.0707"
    assert by_name.loc["mnv2_fine_tune", "Time_train (s)"] == "12.0 ± 2.8"
    assert by_name.loc["mnv2_feature_extraction", "Test accuracy"] == "0.7000"  # n = 1: no sd
    assert by_name.loc["mnv2_feature_extraction", "Runs"] == "1 of 2 ok"
    assert by_name.loc["mnv2_fine_tune", "Runs"] == "2"
    best = table.attrs["best"]
    assert best["Test accuracy"] == [1]  # fine_tune mean 0.85
    assert best["Test loss"] == [1]  # 0.40
    assert best["Train accuracy"] == [2]  # scratch 0.99
    assert best["Time_train (s)"] == [0]  # feature_extraction 4 s


def test_general_table_unknown_dataset(study):
    with pytest.raises(ValueError, match="no runs of dataset 'bees'; datasets in the study: ants"):
        tables.general_table(study, "bees")


def test_write_table_marks_best(study, tmp_path):
    table = tables.general_table(study, "ants")
    paths = render.write_table(table, tmp_path / "out" / "general")
    assert [p.name for p in paths] == ["general.csv", "general.md", "general.html"]
    back = pd.read_csv(paths[0], dtype=str, keep_default_na=False)
    assert back.loc[1, "Test accuracy"] == "0.8500 ± 0.0707"  # CSV: plain values
    md = paths[1].read_text().splitlines()
    assert md[0].startswith("| Model name") and set(md[1]) <= set("|:- ")
    fine_tune = next(line for line in md if "mnv2_fine_tune" in line)
    assert "**0.8500 ± 0.0707**" in fine_tune and "**0.4000 ± 0.1414**" in fine_tune
    scratch = next(line for line in md if "mnv2_scratch" in line)
    assert "**0.9900**" in scratch and "**0.5000**" not in scratch
    html_text = paths[2].read_text()
    assert "<table>" in html_text and "<b>4.0</b>" in html_text
    assert "<b>0.8500 ± 0.0707</b>" in html_text


def test_write_study_table_formats(study, tmp_path):
    paths = render.write_table(study, tmp_path / "study")
    back = pd.read_csv(paths[0])
    assert len(back) == 5 and back["test_accuracy"].max() == 0.9
    md = paths[1].read_text()
    assert re.search(r"\|\s+2562 \|", md)  # counts printed as integers, right-aligned
    assert "0.0001" in md  # learning rate kept readable
    assert "out of memory" in md


def test_strategy_ranking(study, tmp_path):
    extra = [fake_metrics(dataset="signs", classes=tuple("abcdef"), test=0.6, auc=0.9),
             fake_metrics(dataset="signs", classes=tuple("abcdef"), strategy="scratch",
                          test=0.7, auc=0.8)]  # fmt: skip
    df = pd.concat(
        [study, analysis_runs.collect_runs(write_runs(tmp_path, extra, "signs"))], ignore_index=True
    )
    ranking = tables.strategy_ranking(df)
    ants = ranking[ranking.dataset == "ants"].set_index("strategy")
    assert list(ants.index) == ["fine_tune", "feature_extraction", "scratch"]
    assert ants.loc["fine_tune", "accuracy_rank"] == 1
    assert ants.loc["fine_tune", "test_accuracy_mean"] == pytest.approx(0.85)
    assert ants.loc["fine_tune", "runs"] == 2 and ants.loc["feature_extraction", "runs"] == 1
    # binary dataset: ROC AUC ranks too (feature_extraction has the best AUC)
    assert ants.loc["feature_extraction", "roc_auc_rank"] == 1
    assert ants.loc["scratch", "roc_auc_rank"] == 3
    signs = ranking[ranking.dataset == "signs"].set_index("strategy")
    assert signs.loc["scratch", "accuracy_rank"] == 1
    assert signs["roc_auc_rank"].isna().all()  # 6 classes: accuracy decides
    assert signs.loc["scratch", "test_roc_auc_mean"] == pytest.approx(0.8)


def test_flag_suspicious(tmp_path):
    runs = [
        fake_metrics(strategy="good", test=0.85, train=0.95),
        fake_metrics(strategy="gap", test=0.6, train=0.98, classes=tuple("abcdefghij")),
        fake_metrics(strategy="chance", test=0.03, train=0.04, classes=tuple(f"c{i}" for i in range(43))),
        fake_metrics(strategy="failed", status="failed"),
    ]  # fmt: skip
    flagged = tables.flag_suspicious(analysis_runs.collect_runs(write_runs(tmp_path, runs)))
    assert sorted(flagged.strategy) == ["chance", "gap"]
    reasons = flagged.set_index("strategy")["reason"]
    assert "by 0.3800 > 0.3" in reasons["gap"]
    assert "within 1.5x chance (1/43 = 0.0233)" in reasons["chance"]
    assert "exceeds" not in reasons["chance"]


def test_best_run_and_environment(study):
    best = tables.best_run(study, "ants")  # binary: chosen by validation ROC AUC, not by test
    assert best.strategy == "feature_extraction" and best.seed == 0
    assert Path(best.path).name == "run2"
    env = tables.environment_table(study)
    assert len(env) == 1 and env.loc[0, "runs"] == 5 and env.loc[0, "keras"] == "3.15.1"


def test_empty_study_tables():
    df = analysis_runs.collect_runs([])
    assert df.empty and "test_accuracy" in df.columns
    assert tables.strategy_ranking(df).empty
    assert tables.flag_suspicious(df).empty


def test_render_rejects_unknown_format():
    with pytest.raises(ValueError, match="valid formats: html, md"):
        render.render(pd.DataFrame({"a": [1]}), "latex")


def test_numpy_values_written(tmp_path):
    df = pd.DataFrame({"x": np.array([1.5, np.nan])})
    csv, md, _ = render.write_table(df, tmp_path / "t")
    assert md.read_text().splitlines()[2].strip() == "| 1.5000 |"
    assert csv.read_text().splitlines()[1] == "1.5"


def test_general_table_puts_no_augmentation_first(tmp_path):
    runs = [fake_metrics(augmentation="flip"), fake_metrics(augmentation="none"),
            fake_metrics(augmentation="crop")]  # fmt: skip
    table = tables.general_table(analysis_runs.collect_runs(write_runs(tmp_path, runs)), "ants")
    assert list(table["Model name"]) == [
        "mnv2_fine_tune", "mnv2_fine_tune_crop", "mnv2_fine_tune_flip"]  # fmt: skip
