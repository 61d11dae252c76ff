"""Tests of tlbench.analysis.selection: choosing runs and cells by validation, never by test."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tlbench.analysis import selection


def frame(rows: list[dict], classes: int = 10, val_n: int = 1000) -> pd.DataFrame:
    """A study table with the columns selection reads (values are test inputs)."""
    base = {"dataset": "d", "backbone": "b", "augmentation": "none", "status": "ok",
            "num_classes": classes, "val_n": val_n, "val_loss": 0.5, "test_roc_auc": None,
            "val_roc_auc": None}  # fmt: skip
    out = []
    for row in rows:
        row = {**base, **row}
        row.setdefault("strategy_name", row["strategy"])
        out.append(row)
    return pd.DataFrame(out)


def test_run_chosen_by_validation_not_test():
    df = frame([
        {"strategy": "a", "seed": 0, "val_accuracy": 0.90, "test_accuracy": 0.99},
        {"strategy": "b", "seed": 0, "val_accuracy": 0.95, "test_accuracy": 0.80},
    ])  # fmt: skip
    chosen = selection.select_run(df, "d")
    assert chosen.cell == ("d", "b", "b", "none") and chosen.seed == 0
    assert chosen.value == 0.95 and chosen.test_accuracy == 0.80
    record = chosen.as_dict()
    assert record["selected_by"] == "validation" and record["criterion"] == "val_accuracy"
    assert "test accuracy 0.8000" in chosen.describe()
    assert chosen.warning is None  # 0.05 apart on n=1000: far beyond 2 SE (~0.011)


def test_ties_broken_by_validation_loss_then_table_order():
    df = frame([
        {"strategy": "a", "seed": 0, "val_accuracy": 0.9, "val_loss": 0.4, "test_accuracy": 0.5},
        {"strategy": "b", "seed": 0, "val_accuracy": 0.9, "val_loss": 0.3, "test_accuracy": 0.4},
    ])  # fmt: skip
    assert selection.select_run(df).cell[2] == "b"


def test_cell_chosen_by_mean_over_seeds():
    # cell a has the single best validation run, cell b the best mean
    df = frame([
        {"strategy": "a", "seed": 0, "val_accuracy": 0.99, "test_accuracy": 0.90},
        {"strategy": "a", "seed": 1, "val_accuracy": 0.70, "test_accuracy": 0.91},
        {"strategy": "b", "seed": 0, "val_accuracy": 0.90, "test_accuracy": 0.80},
        {"strategy": "b", "seed": 1, "val_accuracy": 0.92, "test_accuracy": 0.82},
    ])  # fmt: skip
    cell = selection.select_cell(df)
    assert cell.cell[2] == "b" and cell.seeds == 2 and cell.seed is None
    assert cell.value == pytest.approx(0.91) and cell.test_accuracy == pytest.approx(0.81)
    assert selection.select_run(df).cell[2] == "a"
    only_a = selection.select_cell(df, strategies=["a"])
    assert only_a.cell[2] == "a" and only_a.candidates == 1 and only_a.runner_up is None


def test_binary_chooses_by_validation_roc_auc():
    df = frame([
        {"strategy": "a", "seed": 0, "val_accuracy": 0.95, "val_roc_auc": 0.90,
         "test_accuracy": 0.9, "test_roc_auc": 0.91},
        {"strategy": "b", "seed": 0, "val_accuracy": 0.90, "val_roc_auc": 0.97,
         "test_accuracy": 0.8, "test_roc_auc": 0.85},
    ], classes=2)  # fmt: skip
    chosen = selection.select_cell(df)
    assert chosen.criterion == "val_roc_auc" and chosen.cell[2] == "b"
    assert chosen.test_value == 0.85 and "test ROC AUC 0.8500" in chosen.describe()


def test_warning_when_validation_too_small_to_choose():
    rows = [
        {"strategy": "a", "seed": 0, "val_accuracy": 0.96, "test_accuracy": 0.9},
        {"strategy": "b", "seed": 0, "val_accuracy": 0.94, "test_accuracy": 0.9},
    ]
    small = selection.select_run(frame(rows, val_n=100))
    se = math.sqrt(0.95 * 0.05 / 100)
    assert small.standard_error == pytest.approx(se)
    assert small.difference_se == pytest.approx(math.sqrt(2) * se)
    assert small.warning is not None and "n = 100" in small.warning
    assert f"{se:.4f}" in small.warning and "runner-up b/b/none, seed 0" in small.warning
    assert small.warning in small.describe() and small.as_dict()["warning"] == small.warning
    # the same gap on 5000 validation images separates them (2 x 0.0044 < 0.02)
    assert selection.select_run(frame(rows, val_n=5000)).warning is None


def test_exact_tie_at_perfect_accuracy_warns():
    rows = [{"strategy": s, "seed": 0, "val_accuracy": 1.0, "test_accuracy": 0.9} for s in "ab"]
    assert selection.select_run(frame(rows, val_n=245)).warning is not None


def test_pilot_study_has_no_test_figure_and_errors_name_the_problem():
    df = frame([{"strategy": "a", "seed": 0, "val_accuracy": 0.9, "test_accuracy": float("nan")}])
    chosen = selection.select_run(df)
    assert chosen.test_accuracy is None and "test split sealed" in chosen.describe()
    with pytest.raises(ValueError, match="no runs of dataset 'zzz'"):
        selection.select_run(df, "zzz")
    with pytest.raises(ValueError, match="no finished run of dataset 'd' with a validation"):
        selection.select_run(df.assign(status="failed"), "d")


def test_grouped_validation_counts_groups_not_images():
    """GTSRB-like validation: 3990 frames in 133 tracks. The standard error counts the
    133 tracks: 0.95 vs 0.93 is told apart on 3990 independent images (2 x 0.0054 <
    0.02) but not on 133 groups (2 x 0.0297)."""
    rows = [
        {"strategy": "a", "seed": 0, "val_accuracy": 0.95, "test_accuracy": 0.9},
        {"strategy": "b", "seed": 0, "val_accuracy": 0.93, "test_accuracy": 0.9},
    ]
    images = selection.select_cell(frame(rows, val_n=3990))
    assert images.warning is None and images.close == []
    grouped = selection.select_cell(frame(rows, val_n=3990).assign(val_groups=133))
    se = math.sqrt(0.94 * 0.06 / 133)
    assert grouped.standard_error == pytest.approx(se)
    assert grouped.warning is not None and "133 groups (3990 images)" in grouped.warning
    assert grouped.close == ["b/b/none"]
    assert "validation 133 groups (3990 images)" in grouped.describe()
    assert grouped.as_dict()["val_groups"] == 133


def test_every_cell_validation_cannot_tell_from_the_chosen_one_is_listed():
    rows = [
        {"strategy": s, "seed": 0, "val_accuracy": v, "test_accuracy": 0.9}
        for s, v in [("a", 0.95), ("b", 0.94), ("c", 0.93), ("d", 0.70)]
    ]
    chosen = selection.select_cell(frame(rows, val_n=100))
    assert chosen.close == ["b/b/none", "b/c/none"]  # d is 25 points below: told apart
    assert chosen.warning.endswith("; nor from b/c/none")
