"""Learning curves over label budgets: t-intervals over seeds, crossovers in words."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tlbench.analysis import learning_curves as lc
from tlbench.report.pages import learning_curves


def curve(cell: str, points: list[tuple[str, float, float, float]]) -> pd.DataFrame:
    """A constructed curve: (budget, per_class, low, high) per point."""
    return pd.DataFrame(
        [
            {"dataset": "d", "cell": cell, "budget": b, "per_class": x, "seeds": 3,
             "accuracy": (lo + hi) / 2, "low": lo, "high": hi}
            for b, x, lo, hi in points
        ]
    )  # fmt: skip


BUDGETS = [("n5", 5), ("n10", 10), ("n100", 100), ("all", 900)]


def test_crossover_is_where_the_intervals_start_to_overlap():
    two_phase = curve("m/two_phase/none", [(b, x, 0.6, 0.7) for b, x in BUDGETS])
    scratch = curve(
        "c/scratch/none",
        [("n5", 5, 0.1, 0.2), ("n10", 10, 0.3, 0.4), ("n100", 100, 0.5, 0.59),
         ("all", 900, 0.6, 0.68)]  # overlapping, mean below,
    )  # fmt: skip
    points = lc.relations(two_phase, scratch)
    assert [p[2] for p in points] == ["better", "better", "better", "tied"]
    assert lc.crossover_sentence("two_phase", "scratch", points) == (
        "two_phase beats scratch up to 100 images per class; from 'all' on they are tied."
    )
    sentences = lc.crossovers(pd.concat([scratch, two_phase]))
    # the winner at small budgets is named first; names lose the parts all cells share
    assert sentences == [
        "m/two_phase beats c/scratch up to 100 images per class; from 'all' on they are tied."
    ]


def test_three_phases_and_no_crossover():
    a = curve("x/a/none", [(b, x, 0.5, 0.6) for b, x in BUDGETS])
    b = curve(
        "x/b/none",
        [("n5", 5, 0.7, 0.8), ("n10", 10, 0.55, 0.65), ("n100", 100, 0.55, 0.7),
         ("all", 900, 0.1, 0.2)],
    )  # fmt: skip
    assert lc.crossover_sentence("a", "b", lc.relations(a, b)) == (
        "b beats a up to 5 images per class; from 10 images per class to 100 images per "
        "class they are tied; from 'all' on a beats b."
    )
    c = curve("x/c/none", [(b, x, 0.0, 0.1) for b, x in BUDGETS])
    assert lc.crossovers(pd.concat([a, c])) == []
    assert lc.crossover_sentence("a", "c", lc.relations(a, c)) == "a beats c at every budget."


def test_cells_without_an_interval_are_not_compared():
    a = curve("x/a/none", [(b, x, 0.5, 0.6) for b, x in BUDGETS])
    b = curve("x/b/none", [(b, x, 0.0, 0.1) for b, x in BUDGETS])
    b.loc[b["budget"] == "all", ["low", "high"]] = math.nan
    assert [p[0] for p in lc.relations(a, b)] == ["n5", "n10", "n100"]


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
    study = study_rows()
    curves = learning_curves.write_learning_curves(
        study, "d", tmp_path / "f.png", tmp_path / "page.rst", tmp_path / "table"
    )
    text = (tmp_path / "page.rst").read_text()
    assert "* two_phase beats scratch up to 5 images per class; from 'all' on they are tied." in (
        text
    )
    assert "same 40 validation images" in text
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    assert len(curves) == 4 and (tmp_path / "table.csv").is_file()


def test_runs_without_a_recorded_budget_are_named():
    study = study_rows().drop(columns="budget_per_class_mean")
    with pytest.raises(ValueError, match="without budget_per_class_mean"):
        lc.curve_table(study)
