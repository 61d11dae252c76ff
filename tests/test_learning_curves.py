"""Learning curves over label budgets: t-intervals over seeds, crossovers in words."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from verdict_helpers import write_budget_study

from tlbench.analysis import learning_curves as lc
from tlbench.report.pages import learning_curves


def crossing_study(root, middle=(0.60, 0.61, 0.60), last_b=(0.90, 0.91, 0.90)):
    """Cells a and b over three budgets: a far ahead at 5 per class, ``middle`` for b at
    10 per class (a at 0.60), b at ``last_b`` against a's 0.60 at 'all'. Both cells err
    on the first images (nested errors: the paired difference is the accuracy gap)."""
    a = {"n5": (5, [0.80, 0.81, 0.80], 0), "n10": (10, [0.60, 0.60, 0.61], 0),
         "all": (90, [0.60, 0.61, 0.60], 0)}  # fmt: skip
    b = {"n5": (5, [0.40, 0.41, 0.40], 0), "n10": (10, list(middle), 0),
         "all": (90, list(last_b), 0)}  # fmt: skip
    return write_budget_study(root, {"m/a/none": a, "m/b/none": b})


def test_a_crossover_is_a_resolved_difference_that_changes_sign(tmp_path):
    comparisons = lc.budget_comparisons(crossing_study(tmp_path), reps=500)
    assert comparisons["budget"].tolist() == ["n5", "n10", "all"]
    assert comparisons["outcome"].tolist() == ["better", "inconclusive", "worse"]
    assert set(comparisons["family"]) == {1}
    assert lc.crossovers(comparisons) == [
        "a beats b up to 5 images per class; at 10 images per class the data cannot tell "
        "them apart; from 'all' on b beats a."
    ]


def test_beats_then_unresolved_then_beats_is_no_crossover(tmp_path):
    """The issue's case: beats -> not told apart -> beats is no crossover."""
    study = crossing_study(tmp_path, last_b=(0.30, 0.31, 0.30))
    comparisons = lc.budget_comparisons(study, reps=500)
    assert comparisons["outcome"].tolist() == ["better", "inconclusive", "better"]
    assert lc.crossovers(comparisons) == []
    points = lc.relations(comparisons, "m/b/none", "m/a/none")  # seen from b: flipped
    assert [p[2] for p in points] == ["worse", "inconclusive", "worse"]
    assert lc.crossover_sentence("b", "a", points) == (
        "a beats b up to 5 images per class; at 10 images per class the data cannot tell "
        "them apart; from 'all' on a beats b."
    )


def test_paired_bootstrap_resolves_what_overlapping_t_intervals_do_not(tmp_path):
    """0.823 vs 0.733 over three seeds each (the GTSRB budget page's 0.824 vs 0.732):
    the t-intervals over seeds overlap, the paired difference is told apart."""
    cells = {"m/a/none": {"n100": (100, [0.80, 0.85, 0.82], 0), "all": (900, [0.9] * 3, 0)},
             "m/b/none": {"n100": (100, [0.70, 0.76, 0.74], 0), "all": (900, [0.5] * 3, 0)}}  # fmt: skip
    study = write_budget_study(tmp_path, cells)
    curves = lc.curve_table(study).set_index(["cell", "budget"])
    a, b = curves.loc[("m/a/none", "n100")], curves.loc[("m/b/none", "n100")]
    assert a["low"] < b["high"]  # the bands overlap
    comparisons = lc.budget_comparisons(study, reps=1000)
    assert comparisons.set_index("budget").loc["n100", "outcome"] == "better"


def study_rows() -> pd.DataFrame:
    rows = []
    accuracies = {("scratch", "n5"): [0.2, 0.3, 0.25], ("scratch", "all"): [0.9, 0.92, 0.91],
                  ("two_phase", "n5"): [0.6, 0.62, 0.64], ("two_phase", "all"): [0.9, 0.9, 0.93]}  # fmt: skip
    for (strategy, budget), values in accuracies.items():
        for seed, acc in enumerate(values):
            rows.append(
                {"dataset": "d", "backbone": "m", "strategy": strategy, "augmentation": "none",
                 "seed": seed, "budget": budget, "status": "ok", "test_accuracy": acc,
                 "budget_per_class_mean": 5.0 if budget == "n5" else 812.5, "val_n": 40}
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_curve_table_has_t_intervals_over_seeds():
    from scipy import stats

    table = lc.curve_table(study_rows())
    assert table["cell"].tolist() == ["m/scratch/none"] * 2 + ["m/two_phase/none"] * 2
    assert table["per_class"].tolist() == [5.0, 812.5, 5.0, 812.5]
    row = table.iloc[0]
    values = np.array([0.2, 0.3, 0.25])
    half = stats.t.ppf(0.975, 2) * values.std(ddof=1) / math.sqrt(3)
    assert row["accuracy"] == pytest.approx(0.25)
    assert (row["low"], row["high"]) == pytest.approx((0.25 - half, 0.25 + half))
    assert all(map(math.isnan, lc.t_interval([0.5])))  # one seed has no interval
    wide = study_rows()
    wide.loc[wide["budget"] == "n5", "test_accuracy"] = [0.0, 1.0, 0.5] * 2
    assert lc.curve_table(wide)[["low", "high"]].iloc[0].tolist() == [0.0, 1.0]  # clipped


def test_page_and_figure(tmp_path):
    study = crossing_study(tmp_path)
    curves = learning_curves.write_learning_curves(
        study, "digits", tmp_path / "f.png", tmp_path / "page.rst", tmp_path / "table",
        settings={"margin": 0.01, "reps": 300, "seed": 0},
    )  # fmt: skip
    text = (tmp_path / "page.rst").read_text()
    assert (
        "* a beats b up to 5 images per class; at 10 images per class the data cannot tell "
        "them apart; from 'all' on b beats a." in text
    )
    assert "paired bootstrap" in text and "tied" not in text
    assert "same 50 validation images" in text
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    assert len(curves) == 6 and (tmp_path / "table.csv").is_file()
    # a pilot study has no test predictions: no crossover is stated, and it says why
    pilot = learning_curves.page_text(curves, "digits", "val", 50, None)
    assert "test split is sealed (pilot study)" in pilot and "beats" not in pilot


def test_runs_without_a_recorded_budget_are_named():
    study = study_rows().drop(columns="budget_per_class_mean")
    with pytest.raises(ValueError, match="without budget_per_class_mean"):
        lc.curve_table(study)
