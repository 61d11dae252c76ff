"""Seeds to resolve (tlbench.analysis.verdict.power): t-based power on the pooled seed
variance, rounded to what the estimate supports."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tlbench.analysis.verdict import assess, power
from tlbench.analysis.verdict.bootstrap import Cell


def runs_at(accuracies, images=100):
    """(seeds, images) correctness with these per-seed accuracies, sharing their errors."""
    return np.array([np.arange(images) < round(a * images) for a in accuracies])


def test_t_based_not_normal():
    # s² = 0.0004 per cell, margin 0.01: effect size 0.5; the normal calculation said 63,
    # the t-test needs 64 (statsmodels' solve_power: 63.77)
    assert power.seeds_for(0.0004, 0.0, 0.01) == 64
    assert power.seeds_for(0.0004, 0.0, 0.02) == 17  # d = 1: 16.7
    # the test set's part alone exceeds the margin: no number of seeds
    assert power.seeds_for(0.0004, 0.0001, 0.01) == math.inf
    with pytest.raises(ValueError, match="margin > 0, got 0"):
        power.seeds_for(0.0004, 0.0, 0.0)


def test_pooled_over_the_datasets_cells():
    a, b, c = runs_at([0.90, 0.92, 0.94]), runs_at([0.50, 0.50, 0.50]), runs_at([0.7])
    variance, df = power.pooled_seed_variance([a, b, c])
    assert df == 4 and variance == pytest.approx((0.0004 * 2 + 0.0) / 4)
    assert power.pooled_seed_variance([c]) == (pytest.approx(math.nan, nan_ok=True), 0)
    result = power.seeds_to_resolve([a, a.copy(), b], 0, 1, margin=0.01)
    assert result.df == 6 and result.low < result.n < result.high
    assert result.n == power.seeds_for(0.0004 * 2 / 3, 0.0, 0.01)


@pytest.mark.parametrize(
    "value, expected", [(7.4, 7), (63, 60), (304, 300), (1125, 1000), (96, 100)]
)
def test_rounded_to_one_significant_figure(value, expected):
    assert power.significant(value) == expected


def test_text_never_prints_more_digits_than_supported():
    cells = [runs_at([0.60, 0.66, 0.63]), runs_at([0.62, 0.60, 0.65])]
    text = power.seeds_text(power.seeds_to_resolve(cells, 0, 1, margin=0.01))
    number = text.split()[1]
    assert text.startswith("about ") and len(number.rstrip("0")) == 1, text
    assert "80 % interval, 4 degrees of freedom" in text
    limited = power.SeedsToResolve(math.inf, math.inf, math.inf, 4, True)
    assert power.seeds_text(limited).startswith("none suffice")
    assert power.seeds_text(power.SeedsToResolve(*[math.nan] * 3, 0, False)).startswith("n/a")


def test_the_verdict_prints_the_rounded_figure():
    rows = pd.DataFrame({"seed": [0, 1, 2], "val_accuracy": [0.9] * 3, "val_loss": [0.1] * 3,
                         "train_seconds": [1.0] * 3})  # fmt: skip
    cells = [
        Cell(("d", "b", s, "none"), runs_at(acc, 1000), rows.assign(dataset="d", backbone="b",
             strategy=s, augmentation="none", val_accuracy=v))
        for s, acc, v in (("x", [0.60, 0.66, 0.63], 0.9), ("y", [0.62, 0.60, 0.65], 0.8))
    ]  # fmt: skip
    table, _ = assess.dataset_cells(cells, margin=0.01, reps=200)
    text = table["seeds_text"].iloc[1]
    assert table["verdict"].iloc[1] == "inconclusive" and text.startswith("about "), text
