"""Tests of tlbench.analysis.verdict: calibration of the intervals by simulation, and the
verdict's logic on hand-made predictions (inputs written here, not results)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from verdict_helpers import write_run

from tlbench.analysis import runs, tables
from tlbench.analysis.verdict import assess, bootstrap, intervals, pairs
from tlbench.report.pages import verdict as verdict_page

# --------------------------------------------------------------------------- calibration


def simulated_cells(rng, accuracies, seeds=3, images=1000, shared=0.7, seed_sd=0.05):
    """One replicate study of cells on a fresh test set (a generative model, not data).

    Image i has a difficulty d_i shared by every run (so runs of different cells
    err on the same images); run (cell, seed) has its own offset u ~ N(0,
    seed_sd) and classifies image i correctly when
    ``shared * d_i + sqrt(1 - shared²) * noise + u`` is below the threshold that
    gives the cell its true accuracy. ``seed_sd=0.05`` gives a seed-to-seed sd
    of test accuracy of about 0.01 at accuracy 0.9 (the quickstart's sds are
    0.005 to 0.022).
    """
    difficulty = rng.standard_normal(images)
    cells = []
    for accuracy in accuracies:
        threshold = stats.norm.ppf(accuracy) * math.sqrt(1 + seed_sd**2)
        offset = rng.normal(0, seed_sd, size=(seeds, 1))
        noise = rng.standard_normal((seeds, images))
        z = shared * difficulty + math.sqrt(1 - shared**2) * noise + offset
        cells.append(z < threshold)
    return cells


def difference_contains_zero(accuracies, studies=200, reps=1000, **kwargs) -> float:
    """Fraction of simulated studies whose 95 % interval of cell 0 - cell 1 contains 0."""
    rng = np.random.default_rng(12345)
    hits = 0
    for _ in range(studies):
        replicates = bootstrap.bootstrap(simulated_cells(rng, accuracies, **kwargs), reps, rng)
        low, high = intervals.interval(replicates, 0, 1)
        hits += low <= 0 <= high
    return hits / studies


@pytest.mark.parametrize("seed_sd", [0.0, 0.05, 0.2])
def test_interval_of_equal_cells_contains_zero_90_to_99_percent(seed_sd):
    """Same true accuracy: the difference interval covers 0 in 90-99 % of 200 studies,
    whether the test set (seed_sd 0: per-seed sd of accuracy about 0.007) or the seeds
    (seed_sd 0.2: about 0.03) dominate the noise."""
    coverage = difference_contains_zero((0.9, 0.9), seed_sd=seed_sd)
    assert 0.90 <= coverage <= 0.99, coverage


def test_cells_five_points_apart_are_separated_in_95_percent():
    """0.90 vs 0.85, 3 seeds, 1,000 test images: separated in at least 95 % of 200 studies
    when the test set dominates the noise (seed_sd 0.02: per-seed sd of accuracy about
    0.008, binomial sd of one accuracy on 1,000 images 0.0095). With three seeds and
    more seed-to-seed variation no interval that keeps 95 % coverage separates them
    that often (0.87 at seed_sd 0.05, per-seed sd 0.0105: the seed variance is then
    estimated from three values, with 2 degrees of freedom)."""
    assert 1 - difference_contains_zero((0.90, 0.85), seed_sd=0.02) >= 0.95


def test_bootstrap_spread_matches_the_spread_across_studies():
    """Seeds vary by run noise only: the bootstrap sd of the difference is the sd of the
    observed difference across replicate studies (resampling images and seeds with
    replacement, without removing the run noise from the image level, gives 1.3x)."""
    rng = np.random.default_rng(5)
    observed, spread = [], []
    for _ in range(200):
        cells = simulated_cells(rng, (0.9, 0.9), seed_sd=0.0)
        observed.append(cells[0].mean() - cells[1].mean())
        # each cell's own seed variance (pool_below=2): the bootstrap's structure; pooling
        # keeps a cell's own variance when it is the larger, which widens on purpose
        values = bootstrap.bootstrap(cells, 300, rng, pool_below=2).values
        spread.append(np.std(values[:, 0] - values[:, 1]))
    assert np.mean(spread) / np.std(observed) == pytest.approx(1.0, abs=0.12)


def test_bootstrap_is_paired_and_reproducible():
    rng = np.random.default_rng(0)
    cells = simulated_cells(rng, (0.8, 0.8), seed_sd=0.0, shared=0.95)
    first = bootstrap.bootstrap(cells, 500, 7).values
    assert np.array_equal(first, bootstrap.bootstrap(cells, 500, 7).values)
    # both cells err on the same (hard) images: their replicates move together, and the
    # difference varies far less than it would with independent test sets
    assert np.corrcoef(first[:, 0], first[:, 1])[0, 1] > 0.5
    assert np.var(first[:, 0] - first[:, 1]) < 0.5 * (np.var(first[:, 0]) + np.var(first[:, 1]))
    # two one-seed cells with identical predictions: the same images are drawn for
    # both, so the difference is exactly 0 in every replicate
    same = bootstrap.bootstrap([cells[0][:1], cells[0][:1].copy()], 200, 1).values
    assert np.array_equal(same[:, 0], same[:, 1])


def test_interval_is_widened_for_few_seeds_and_clipped():
    """Two seeds, 0.4 and 0.6, each cell with its own seed variance (pool_below=2): the
    bootstrap spread (about 0.5 ± 0.12) is widened to Student's t with 1 degree of
    freedom (t / z = 6.5) and clipped to [0, 1]."""
    two = runs_at([0.4, 0.6], images=50)
    cells = [two, runs_at([0.9, 0.9, 0.92], images=50)]
    replicates = bootstrap.bootstrap(cells, 400, 0, pool_below=2)
    spread = np.quantile(replicates.values[:, 0], [0.025, 0.975])
    assert 0.25 < spread[0] and spread[1] < 0.75
    assert intervals.interval(replicates, 0) == (0.0, 1.0)
    d_low, d_high = intervals.interval(replicates, 0, 1)
    assert -1.0 <= d_low < -0.5 and 0.05 < d_high <= 1.0  # about -0.42 ± 0.5
    # one seed and nothing to pool: seed variation unknown, the whole range; of a
    # deterministic cell, the normal interval of the test images' bootstrap as it is
    assert intervals.interval(bootstrap.bootstrap([two[:1]], 400, 0), 0) == (0.0, 1.0)
    single = bootstrap.bootstrap([two[:1]], 400, 0, stochastic=[False])
    sd = single.values[:, 0].std()
    assert intervals.interval(single, 0) == pytest.approx(
        (0.4 - stats.norm.ppf(0.975) * sd, 0.4 + stats.norm.ppf(0.975) * sd)
    )


def grouped_cells(rng, seeds=3, groups=40, size=25, spread=0.8):
    """Two cells of equal true accuracy on ``groups`` tracks of ``size`` frames: each cell
    finds each track easier or harder in its own way (a cell-by-group effect of sd
    ``spread``), so frames of a track are not independent evidence of a difference."""
    cells = []
    for _ in range(2):
        track = np.repeat(rng.normal(0, spread, groups), size)
        noise = rng.standard_normal((seeds, groups * size))
        cells.append(track + noise < 1.3)
    return cells, np.repeat(np.arange(groups), size)


def test_grouped_images_are_resampled_by_group():
    """Tracks: resampling frames one by one covers the zero difference in about 60 % of
    studies; resampling whole tracks in 90-99 %."""
    rng = np.random.default_rng(3)
    by_image = by_group = 0
    for _ in range(150):
        cells, groups = grouped_cells(rng)
        flat = bootstrap.bootstrap(cells, 400, rng)
        grouped = bootstrap.bootstrap(cells, 400, rng, groups=groups)
        assert grouped.units == 40 and grouped.grouped and not flat.grouped
        low, high = intervals.interval(flat, 0, 1)
        by_image += low <= 0 <= high
        low, high = intervals.interval(grouped, 0, 1)
        by_group += low <= 0 <= high
    assert by_image / 150 < 0.8
    assert 0.90 <= by_group / 150 <= 0.99, by_group / 150


def test_family_of_comparisons_holds_together():
    """Six equal cells compared with the first: with the simultaneous band, some cell is
    called better or worse in at most 7 % of 150 studies; with five separate 95 %
    intervals about 15 %."""
    rng = np.random.default_rng(11)
    together = apart = 0
    for _ in range(150):
        cells = simulated_cells(rng, [0.9] * 6, seed_sd=0.05)
        table = intervals.compare_cells(cells, reps=500, rng=rng)
        together += table["outcome"].isin(["better", "worse"]).any()
        apart += ((table["marginal_low"] > 0) | (table["marginal_high"] < 0)).any()
    assert together / 150 <= 0.07 < 0.10 < apart / 150


def test_one_seed_of_a_stochastic_strategy_is_inconclusive():
    """A one-seed cell far ahead is inconclusive (why: one seed); the same cell of a
    deterministic strategy (stochastic=False) is better."""
    rng = np.random.default_rng(2)
    cells = simulated_cells(rng, [0.7, 0.95, 0.7], seed_sd=0.05)
    cells[1] = cells[1][:1]
    table = intervals.compare_cells(cells, reps=500).set_index("cell")
    assert table.loc[1, "outcome"] == "inconclusive" and "one seed" in table.loc[1, "reason"]
    assert table.loc[1, "low"] > 0  # the interval alone would have said better
    assert not table.loc[1, "non_inferior"]
    fixed = intervals.compare_cells(cells, reps=500, stochastic=[True, False, True])
    assert fixed.set_index("cell").loc[1, "outcome"] == "better"


def test_seed_variance_is_pooled_for_cells_with_few_seeds():
    """Cells with fewer than 5 seeds and alike variances borrow the variance pooled over
    the dataset's cells (more degrees of freedom, a narrower interval); a cell whose own
    is larger keeps it (borrowing never shrinks a variance); five seeds keep their own;
    cells whose variances differ (Bartlett) keep their own."""
    per_seed = [np.array([0.80, 0.81]), np.array([0.70, 0.71, 0.72]), np.array([0.5, 0.53]),
                np.array([0.60, 0.61, 0.62, 0.61, 0.60])]  # fmt: skip
    variance, df, source = bootstrap.seed_variances(per_seed, [True] * 4)
    assert list(source) == [bootstrap.POOLED, bootstrap.POOLED, 2, 3]
    own = [np.var(v, ddof=1) for v in per_seed]
    pooled = (own[0] * 1 + own[1] * 2 + own[2] * 1 + own[3] * 4) / 8
    assert variance[0] == pytest.approx(pooled) and df[0] == 8
    assert own[2] > pooled and (variance[2], df[2]) == (pytest.approx(own[2]), 1)
    assert (variance[3], df[3]) == (pytest.approx(own[3]), 4)
    # far apart variances (Bartlett p < 0.10): every cell keeps its own
    wild = [*per_seed[:2], np.array([0.2, 0.9, 0.5])]
    assert list(bootstrap.seed_variances(wild, [True] * 3)[2]) == [0, 1, 2]
    # a cell whose seeds all scored alike (at chance) borrows, and does not feed the pool
    flat = bootstrap.seed_variances([*per_seed, np.array([0.1, 0.1, 0.1])], [True] * 5)
    assert flat[2][4] == bootstrap.POOLED and flat[0][4] == pytest.approx(pooled)
    # one seed: the pooled variance; deterministic: none, known exactly

    variance, df, source = bootstrap.seed_variances(per_seed[:2] + [np.array([0.5])],
                                                    [True, True, False])  # fmt: skip
    assert variance[2] == 0 and df[2] == math.inf
    alone = bootstrap.seed_variances([np.array([0.5])], [True])
    assert (alone[0][0], alone[1][0]) == (0.0, 0.0)  # nothing to pool: nothing known
    # pooling narrows a two-seed cell's interval
    cells = [runs_at(a, images=4000) for a in ([0.80, 0.83], [0.70, 0.73], [0.6, 0.66, 0.62])]
    pooled_width = np.subtract(*intervals.interval(bootstrap.bootstrap(cells, 500, 0), 0, 1))
    own_width = np.subtract(
        *intervals.interval(bootstrap.bootstrap(cells, 500, 0, pool_below=2), 0, 1)
    )
    assert abs(pooled_width) < 0.9 * abs(own_width)


def test_degrees_of_freedom_are_the_seed_levels_whatever_the_images_add():
    """Two cells of 3 seeds with their own seed variances (pool_below=2) that err on
    different images (85 % of 3 000 each) and whose seeds differ by a few images: the
    test images carry almost all of the variance, yet an interval's degrees of freedom
    are the seed level's Welch-Satterthwaite (2 for a cell, 2 to 4 for the difference),
    not raised by the images. Counting the images they came out in the thousands:
    a seed variance small by chance then bought a small t quantile (the band covered
    0.88 of simulated studies with seed spreads tenfold apart)."""
    rng = np.random.default_rng(8)
    cells = []
    for flips in ((0, 3, 7), (0, 5, 9)):
        base = rng.random(3000) < 0.85
        runs = np.tile(base, (3, 1))
        for seed, k in enumerate(flips):
            runs[seed, :k] = ~runs[seed, :k]
        cells.append(runs)
    replicates = bootstrap.bootstrap(cells, 500, 0, pool_below=2)
    table = intervals.intervals(replicates, [(0, 1), (0, None)], simultaneous=False)
    v = replicates.seed_var
    assert list(replicates.seed_df) == [2, 2] and v.sum() < 0.05 * table["sd"][0] ** 2
    welch = (v[0] + v[1]) ** 2 / (v[0] ** 2 / 2 + v[1] ** 2 / 2)
    assert 2 <= welch <= 4
    assert table["df"].tolist() == pytest.approx([welch, 2.0])
    half = (table["high"] - table["low"]) / 2
    assert half.tolist() == pytest.approx(
        [stats.t.isf(0.025, welch) * table["sd"][0], stats.t.isf(0.025, 2) * table["sd"][1]]
    )


def test_unknown_seed_variation_spans_the_whole_range():
    """One seed per cell and nothing to pool: the seed variation is unknown, so the
    difference's interval is [-1, 1] (the test images alone would cover about 82 %);
    deterministic cells keep the test images' interval."""
    rng = np.random.default_rng(4)
    cells = [c[:1] for c in simulated_cells(rng, [0.9, 0.9])]
    replicates = bootstrap.bootstrap(cells, 300, 0)
    assert intervals.interval(replicates, 0, 1) == (-1.0, 1.0)
    assert intervals.interval(replicates, 0) == (0.0, 1.0)
    fixed = bootstrap.bootstrap(cells, 300, 0, stochastic=[False, False])
    low, high = intervals.interval(fixed, 0, 1)
    assert -0.1 < low < high < 0.1


def test_bootstrap_rejects_mismatched_cells():
    with pytest.raises(ValueError, match=r"cell 1: correctness has shape \(2, 5\), expected"):
        bootstrap.bootstrap([np.ones((3, 4), bool), np.ones((2, 5), bool)], 10)
    with pytest.raises(ValueError, match="reps must be >= 1, got 0"):
        bootstrap.bootstrap([np.ones((3, 4), bool)], 0)


# --------------------------------------------------------------------------- small functions


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0.02, 0.05, "better"),
        (0.002, 0.008, "equivalent"),  # above 0 but inside the margin: equivalent
        (-0.05, -0.02, "worse"),
        (-0.03, 0.02, "inconclusive"),  # contains 0, reaches past the margin
        (-0.009, 0.009, "equivalent"),
        (0.005, 0.02, "better"),
        (-0.02, -0.005, "worse"),
        (-1.0, 0.3731, "inconclusive"),  # pets' cnn_fractal/feature_extraction: not equivalent
        (-0.42, 0.06, "inconclusive"),  # GTSRB at 5 per class, two_phase
    ],
)
def test_outcome(low, high, expected):
    assert intervals.outcome(low, high, margin=0.01) == expected


def test_outcome_rejects_negative_margin_and_reversed_interval():
    with pytest.raises(ValueError, match="margin must be >= 0, got -0.1"):
        intervals.outcome(0, 1, -0.1)
    with pytest.raises(ValueError, match="low 0.2 is above high 0.1"):
        intervals.outcome(0.2, 0.1)


def runs_at(accuracies, images=100):
    """(seeds, images) correctness with the given per-seed accuracies, correct on the
    first images (so seeds share their errors)."""
    return np.array([np.arange(images) < round(a * images) for a in accuracies])


# --------------------------------------------------------------------------- hand-made study


@pytest.fixture
def hand_made(tmp_path) -> pd.DataFrame:
    """digits: a pretrained cell chosen by validation, a cheaper pretrained cell with a
    slightly *higher* test accuracy but lower validation, a clearly worse scratch cell."""
    paths = [
        *write_run(tmp_path, "mnv2/fine_tune/none", accuracy_per_seed=[0.90, 0.91, 0.90],
                   val=[0.95, 0.96, 0.95], seconds=100, pretrained=True),
        *write_run(tmp_path, "mnv2/feature_extraction/none", accuracy_per_seed=[0.91, 0.90, 0.91],
                   val=[0.93, 0.94, 0.93], seconds=10, pretrained=True, offset=3),
        *write_run(tmp_path, "cnn/scratch/none", accuracy_per_seed=[0.70, 0.72, 0.69],
                   val=[0.70, 0.71, 0.70], seconds=50, pretrained=False),
    ]  # fmt: skip
    return runs.collect_runs(paths)


def test_cells_ordered_by_validation_with_intervals_and_verdicts(hand_made):
    cells = assess.cell_table(hand_made, margin=0.01, reps=500)
    assert list(cells["strategy"]) == ["fine_tune", "feature_extraction", "scratch"]
    assert list(cells["rank"]) == [1, 2, 3]
    assert list(cells["verdict"]) == ["selected", "inconclusive", "worse"]
    assert set(cells["criterion"]) == {"val_accuracy"}  # 3 classes
    top = cells.iloc[0]
    assert top["test_accuracy"] == pytest.approx((0.90 + 0.91 + 0.90) / 3)
    assert top["ci_low"] < top["test_accuracy"] < top["ci_high"]
    tied = cells.iloc[1]
    assert tied["diff_low"] < 0 < tied["diff_high"]
    assert tied["difference"] == pytest.approx(0.91 * 2 / 3 + 0.90 / 3 - top["test_accuracy"])
    assert not tied["non_inferior"] and tied["seeds_to_resolve"] >= 2
    assert set(cells["family"]) == {2} and "pooled" in set(cells["seed_variance"])
    worse = cells.iloc[2]
    assert worse["diff_high"] < -0.1 and math.isnan(worse["seeds_to_resolve"])


def test_pairwise_table_has_every_ordered_pair_with_its_interval(hand_made):
    table = pairs.pairwise_table(hand_made, margin=0.01, reps=500)
    assert len(table) == 6  # 3 cells, ordered pairs
    pair = table.set_index(["a", "b"])
    worse = pair.loc[("cnn/scratch/none", "mnv2/fine_tune/none")]
    # 0.2 worse; the band over three pairs, at the seed level's degrees of freedom
    # (scratch's own variance, 2, beside the others' pooled one; the 200 test images do
    # not add to them), ends at about -0.09
    assert worse["verdict"] == "worse" and worse["diff_high"] < -0.05
    assert worse["difference"] == pytest.approx((2.11 - 2.71) / 3)
    back = pair.loc[("mnv2/fine_tune/none", "cnn/scratch/none")]
    assert back["verdict"] == "better"
    assert (back["diff_low"], back["diff_high"]) == pytest.approx(
        (-worse["diff_high"], -worse["diff_low"])
    )
    tied = pair.loc[("mnv2/feature_extraction/none", "mnv2/fine_tune/none")]
    assert tied["verdict"] == "inconclusive" and tied["diff_low"] < 0 < tied["diff_high"]
    assert set(table["family"]) == {3}  # the dataset's unordered pairs
    # wider than the cell table's (a family of 2 comparisons with the selected cell)
    cells = assess.cell_table(hand_made, margin=0.01, reps=500).set_index("strategy")
    low, high = cells.loc["feature_extraction", ["diff_low", "diff_high"]]
    assert tied["diff_low"] < low and high < tied["diff_high"]


def test_verdict_table(hand_made):
    table = assess.verdict_table(hand_made, margin=0.01, reps=500)
    assert len(table) == 1
    row = table.iloc[0]
    # validation chooses, although feature_extraction has the higher test accuracy
    assert row["selected"] == "mnv2/fine_tune/none"
    assert row["inconclusive"].startswith("mnv2/feature_extraction/none [")
    assert "seeds to resolve" in row["inconclusive"]
    assert "scratch" not in row["inconclusive"] and row["equivalent"] == ""
    assert row["better_on_test"] == "" and row["worse"] == 1 and row["family"] == 2
    assert row["best_pretrained"] == "mnv2/fine_tune/none"
    assert row["best_scratch"] == "cnn/scratch/none"
    assert row["transfer_gain"] == pytest.approx((2.71 - 2.11) / 3)
    assert row["gain_low"] > 0.1 and row["gain_verdict"] == "better"
    # 10 s, but the data cannot tell it from the chosen cell: not an answer
    assert row["cheapest_as_good"] == "" and row["as_good"] == ""
    # validation (n = 50) cannot tell the chosen cell from feature_extraction
    assert row["val_n"] == 50 and row["val_se"] == pytest.approx(
        math.sqrt(0.9433 * 0.0567 / 50), abs=1e-4
    )
    assert row["val_close"] == "mnv2/feature_extraction/none"
    assert row["val_warning"].startswith("Validation cannot choose: the validation split (n = 50)")
    text = verdict_page.front_section(table)
    assert text.startswith("Verdict\n-------\n")
    first = text.split("\n")[3]  # the sentence naming the chosen cell
    assert "``mnv2/fine_tune/none``, test accuracy 0.9033" in first
    assert "on 50 validation images (standard error 0.0327)" in first
    assert "Validation cannot choose" in first and "mnv2/feature_extraction/none" in first
    assert "* Inconclusive (the data cannot tell): mnv2/feature_extraction/none [" in text
    assert "The budget answer: no other cell is shown to be as good as the chosen one" in text
    assert "tied" not in text.lower()


def test_the_budget_answer_comes_from_cells_shown_as_good(tmp_path):
    """A cheaper cell erring on the same images as the chosen one is non-inferior (lower
    bound above -margin): the budget answer. A cheaper cell the data cannot tell from it
    is not."""
    paths = [
        *write_run(tmp_path, "m/fine_tune/none", accuracy_per_seed=[0.90, 0.91, 0.90],
                   val=[0.95, 0.96, 0.95], seconds=100, pretrained=True),
        *write_run(tmp_path, "m/feature_extraction/none", accuracy_per_seed=[0.90, 0.91, 0.905],
                   val=[0.94, 0.94, 0.94], seconds=20, pretrained=True),
        *write_run(tmp_path, "m/linear_probe/none", accuracy_per_seed=[0.89, 0.90, 0.89],
                   val=[0.93, 0.93, 0.93], seconds=5, pretrained=True, offset=50),
    ]  # fmt: skip
    study = runs.collect_runs(paths)
    cells = assess.cell_table(study, margin=0.02, reps=1000).set_index("strategy")
    assert cells.loc["feature_extraction", "non_inferior"]
    assert cells.loc["feature_extraction", "diff_low"] >= -0.02
    assert cells.loc["linear_probe", "verdict"] == "inconclusive"
    assert not cells.loc["linear_probe", "non_inferior"]
    row = assess.verdict_table(study, margin=0.02, reps=1000, cost="train_seconds").iloc[0]
    assert row["cheapest_as_good"] == "m/feature_extraction/none"  # not the 5 s probe
    assert row["cheapest_seconds"] == 20
    text = verdict_page.front_section(pd.DataFrame([row]))
    assert "The budget answer: ``m/feature_extraction/none`` is the cheapest cell shown" in text
    assert "20 s of training, test accuracy" in text
    # by the default cost, FLOPs seen, which these hand-made runs did not record: none named
    row = assess.verdict_table(study, margin=0.02, reps=1000).iloc[0]
    assert row["cheapest_as_good"] == "" and row["cost_note"].startswith("no flops_seen recorded")
    text = verdict_page.front_section(pd.DataFrame([row]))
    assert "no flops_seen recorded for m/fine_tune/none" in text


def test_a_cell_better_on_test_is_reported_not_chosen(tmp_path):
    paths = [
        *write_run(tmp_path, "a/fine_tune/none", accuracy_per_seed=[0.70, 0.71, 0.70],
                   val=[0.9, 0.9, 0.9], seconds=5, pretrained=True),
        *write_run(tmp_path, "a/scratch/none", accuracy_per_seed=[0.90, 0.91, 0.90],
                   val=[0.8, 0.8, 0.8], seconds=5, pretrained=False),
    ]  # fmt: skip
    row = assess.verdict_table(runs.collect_runs(paths), reps=500).iloc[0]
    assert row["selected"] == "a/fine_tune/none" and row["inconclusive"] == ""
    assert row["better_on_test"] == "a/scratch/none"
    text = verdict_page.front_section(pd.DataFrame([row]))
    assert "No other cell is shown equivalent to it." in text
    assert "Better on test, though lower on validation: a/scratch/none" in text


def test_binary_datasets_choose_by_validation_roc_auc(tmp_path):
    paths = [
        *write_run(tmp_path, "a/fine_tune/none", accuracy_per_seed=[0.8, 0.8], val=[0.9, 0.9],
                   seconds=5, pretrained=True, classes=2, auc=0.70),
        *write_run(tmp_path, "a/scratch/none", accuracy_per_seed=[0.8, 0.8], val=[0.8, 0.8],
                   seconds=5, pretrained=False, classes=2, auc=0.95),
    ]  # fmt: skip
    order = assess.validation_order(runs.collect_runs(paths))
    assert list(order["strategy"]) == ["scratch", "fine_tune"]
    assert set(order["criterion"]) == {"val_roc_auc"}


def test_runs_tested_on_different_images_are_an_error(tmp_path):
    paths = [
        *write_run(tmp_path, "a/fine_tune/none", accuracy_per_seed=[0.8], val=[0.9], seconds=5,
                   pretrained=True),
        *write_run(tmp_path, "a/scratch/none", accuracy_per_seed=[0.8], val=[0.8], seconds=5,
                   pretrained=False, images=150),
    ]  # fmt: skip
    with pytest.raises(ValueError, match="tested on different images: .*scratch.* and .*fine"):
        assess.cell_table(runs.collect_runs(paths))
    Path(paths[0]).with_name("predictions.npz").unlink()
    with pytest.raises(FileNotFoundError, match="run has no test predictions: .*fine_tune"):
        assess.cell_table(runs.collect_runs(paths))


# --------------------------------------------------------------------------- across datasets


def test_verdict_per_label_budget(tmp_path, monkeypatch):
    """With label budgets, each budget has its own selected cell and transfer gain, from
    its own runs (not pooled with the other budgets' runs as extra seeds). The verdict,
    the ranking and the comparison across datasets come from one bootstrap per budget."""
    paths = []
    budgets = {"n5": (5.0, [0.50, 0.52, 0.50], [0.70, 0.71, 0.70]),
               "all": (60.0, [0.90, 0.91, 0.90], [0.70, 0.72, 0.69])}  # fmt: skip
    for label, (size, tuned, scratch) in budgets.items():
        new = write_run(tmp_path / label, "mnv2/fine_tune/none", accuracy_per_seed=tuned,
                        val=tuned, seconds=100, pretrained=True)  # fmt: skip
        new += write_run(tmp_path / label, "cnn/scratch/none", accuracy_per_seed=scratch,
                         val=scratch, seconds=50, pretrained=False)  # fmt: skip
        for path in new:
            metrics = json.loads(path.read_text())
            path.write_text(json.dumps({**metrics, "budget": label, "budget_per_class_mean": size}))
        paths += new
    study = runs.collect_runs(paths)
    calls = []
    original = bootstrap.bootstrap
    monkeypatch.setattr(
        bootstrap, "bootstrap", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    table = verdict_page.write_verdict(
        study, tmp_path / "verdict", tmp_path / "ranking", tmp_path / "front.rst", reps=300
    )
    assert len(calls) == 2  # one per budget (the dataset's only one)
    monkeypatch.setattr(bootstrap, "bootstrap", original)
    assert table[["budget", "selected", "gain_verdict"]].values.tolist() == [
        ["n5", "cnn/scratch/none", "worse"],
        ["all", "mnv2/fine_tune/none", "better"],
    ]
    assert table["seeds"].tolist() == [3, 3]
    assert table["transfer_gain"].iloc[0] == pytest.approx((1.52 - 2.11) / 3)
    front = (tmp_path / "front.rst").read_text()
    assert (
        "**digits** at label budget n5: chosen by mean validation accuracy over seeds on 50 "
        in front
    )
    assert "budget" in pd.read_csv(tmp_path / "verdict.csv").columns
    # the ranking and the general table keep the budgets apart too (3 seeds per row)
    cells = assess.cell_table(study, reps=300)
    assert cells[["budget", "strategy", "seeds"]].values.tolist() == [
        ["n5", "scratch", 3], ["n5", "fine_tune", 3], ["all", "fine_tune", 3], ["all", "scratch", 3]
    ]  # fmt: skip
    assert list(assess.ranking(cells).columns[:2]) == ["dataset", "budget"]
    written = pd.read_csv(tmp_path / "ranking.csv", keep_default_na=False)
    assert written[["budget", "strategy", "verdict"]].values.tolist() == (
        assess.ranking(cells)[["budget", "strategy", "verdict"]].values.tolist()
    )
    general = tables.general_table(study, "digits")
    assert (
        sorted(general["Model name"].str.extract(r"\[budget (\w+)\]")[0])
        == ["all"] * 2 + ["n5"] * 2
    )
    assert set(general["Runs"]) == {"3"}
    assert set(tables.strategy_ranking(study)["runs"]) == {3}


# --------------------------------------------------------------------------- BatchNorm pairs


def test_batchnorm_table_pairs_cells_that_differ_only_in_the_policy(tmp_path, monkeypatch):
    """fine_tune (frozen) against fine_tune_bn_train (train) of one backbone is a pair;
    a strategy with two frozen cells is ambiguous and left out; feature extraction has
    no trained twin. Frozen is 0.2 better here, clearly outside the margin."""
    cells = {
        "mn/fine_tune/none": ("fine_tune", "frozen", [0.90, 0.91, 0.90]),
        "mn/fine_tune_bn_train/none": ("fine_tune", "train", [0.70, 0.71, 0.69]),
        "mn/feature_extraction/none": ("feature_extraction", "frozen", [0.80, 0.80, 0.81]),
        "mn/two_phase/none": ("two_phase", "frozen", [0.85, 0.85, 0.85]),
        "mn/two_phase_long/none": ("two_phase", "frozen", [0.86, 0.86, 0.86]),
        "mn/two_phase_bn_train/none": ("two_phase", "train", [0.84, 0.84, 0.84]),
    }
    paths, labels = [], {}
    for offset, (name, (strategy, policy, accuracy)) in enumerate(cells.items()):
        paths += write_run(tmp_path, name, accuracy_per_seed=accuracy, val=accuracy,
                           seconds=10 + offset, pretrained=True, offset=offset)  # fmt: skip
        labels[name.split("/")[1]] = (strategy, policy)
    study = runs.collect_runs(paths)
    study["strategy_name"] = [labels[s][0] for s in study["strategy"]]
    study["batchnorm"] = [labels[s][1] for s in study["strategy"]]
    table = pairs.batchnorm_table(study, margin=0.01, reps=500)
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["frozen"], row["train"], row["strategy_name"]) == (
        "fine_tune", "fine_tune_bn_train", "fine_tune")  # fmt: skip
    assert row["difference"] == pytest.approx((2.71 - 2.10) / 3)
    assert 0.1 < row["diff_low"] < row["difference"] < row["diff_high"]
    assert row["verdict"] == "better" and row["seeds"] == "3/3"
    assert row["frozen_validation"] == pytest.approx(2.71 / 3)
    assert (row["frozen_seconds"], row["train_seconds"]) == (10, 11)
    # given the study's bootstraps, both tables reuse them: the same figures, no new draw
    boots = pairs.dataset_bootstraps(study, reps=500)
    calls = []
    original = bootstrap.bootstrap
    monkeypatch.setattr(
        bootstrap, "bootstrap", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    reused = pairs.batchnorm_table(study, margin=0.01, bootstraps=boots)
    pd.testing.assert_frame_equal(reused, table)
    pair_table = pairs.pairwise_table(study, margin=0.01, bootstraps=boots)
    assert calls == []
    monkeypatch.setattr(bootstrap, "bootstrap", original)
    row = pair_table.set_index(["a", "b"]).loc[("mn/fine_tune/none", "mn/fine_tune_bn_train/none")]
    # the pairwise table's family is every pair of the 6 cells (15): a wider band than
    # the BatchNorm table's family of one pair
    assert row["family"] == 15 and table.iloc[0]["family"] == 1
    assert (
        row["diff_low"] < table.iloc[0]["diff_low"] < table.iloc[0]["diff_high"] < row["diff_high"]
    )
    # the same study without the trained twin has no pair
    alone = study[study["strategy"] != "fine_tune_bn_train"]
    assert pairs.batchnorm_table(alone, reps=100).empty
