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

from tlbench.analysis import runs, tables
from tlbench.analysis.verdict import across, assess, bootstrap, pairs
from tlbench.report.figures import verdict as verdict_figure
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
        low, high = bootstrap.interval(replicates, 0, 1)
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
        values = bootstrap.bootstrap(cells, 300, rng).values
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
    """Two seeds, 0.4 and 0.6: the percentile interval (about 0.5 ± 0.12) is widened by
    t(1 df) / z = 6.5 and clipped to [0, 1]."""
    two = runs_at([0.4, 0.6], images=50)
    replicates = bootstrap.bootstrap([two, runs_at([0.9, 0.9, 0.92], images=50)], 400, 0)
    percentile = np.quantile(replicates.values[:, 0], [0.025, 0.975])
    assert 0.25 < percentile[0] and percentile[1] < 0.75
    assert bootstrap.interval(replicates, 0) == (0.0, 1.0)
    d_low, d_high = bootstrap.interval(replicates, 0, 1)
    assert -1.0 <= d_low < -0.5 and 0.05 < d_high <= 1.0  # about -0.42 ± 0.5
    # one seed per cell: no seed level, the percentile interval as it is
    single = bootstrap.bootstrap([two[:1]], 400, 0)
    expected = np.quantile(single.values[:, 0], [0.025, 0.975])
    assert bootstrap.interval(single, 0) == pytest.approx(expected)


def test_bootstrap_rejects_mismatched_cells():
    with pytest.raises(ValueError, match=r"cell 1: correctness has shape \(2, 5\), expected"):
        bootstrap.bootstrap([np.ones((3, 4), bool), np.ones((2, 5), bool)], 10)
    with pytest.raises(ValueError, match="reps must be >= 1, got 0"):
        bootstrap.bootstrap([np.ones((3, 4), bool)], 0)


# --------------------------------------------------------------------------- small functions


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0.02, 0.05, ("better", False)),
        (0.002, 0.008, ("tied", True)),  # above 0 but inside the margin: equivalent
        (-0.05, -0.02, ("worse", False)),
        (-0.03, 0.02, ("tied", False)),  # contains 0, reaches past the margin: unresolved
        (-0.009, 0.009, ("tied", True)),
        (0.005, 0.02, ("better", False)),
    ],
)
def test_compare(low, high, expected):
    assert bootstrap.compare(low, high, margin=0.01) == expected


def test_compare_rejects_negative_margin():
    with pytest.raises(ValueError, match="margin must be >= 0, got -0.1"):
        bootstrap.compare(0, 1, -0.1)


def runs_at(accuracies, images=100):
    """(seeds, images) correctness with the given per-seed accuracies, correct on the
    first images (so seeds share their errors)."""
    return np.array([np.arange(images) < round(a * images) for a in accuracies])


def test_seeds_to_resolve_normal_power_calculation():
    a = runs_at([0.90, 0.92, 0.94])
    # identical cells: nothing comes from the test set; s_a² = s_b² = 0.0004
    k = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert bootstrap.seeds_to_resolve(a, a.copy(), margin=0.01) == math.ceil(k**2 * 0.0008 / 1e-4)
    assert bootstrap.seeds_to_resolve(a, a.copy(), margin=0.01) == 63
    # twice the margin: a quarter of the seeds
    assert bootstrap.seeds_to_resolve(a, a.copy(), margin=0.02) == math.ceil(k**2 * 0.0008 / 4e-4)
    # the cells err on disjoint halves of a 100-image test set: no number of seeds resolves
    b = ~runs_at([0.5, 0.5, 0.5])
    assert bootstrap.seeds_to_resolve(runs_at([0.5, 0.5, 0.5]), b) == math.inf
    assert math.isnan(bootstrap.seeds_to_resolve(a[:1], a))  # one seed: no seed variance


# --------------------------------------------------------------------------- hand-made study


def write_run(root, name, *, accuracy_per_seed, val, seconds, pretrained, classes=3, auc=None,
              images=200, dataset="digits", offset=0):  # fmt: skip
    """Write the run folders of one cell: metrics.json and predictions.npz per seed.

    Seed s is correct on images ``offset .. offset + accuracy * images`` (mod images).
    """
    backbone, strategy, augmentation = name.split("/")
    y_true = np.arange(images) % classes
    paths = []
    for seed, (accuracy, validation) in enumerate(zip(accuracy_per_seed, val, strict=True)):
        right = (np.arange(images) - offset) % images < round(accuracy * images)
        predicted = np.where(right, y_true, (y_true + 1) % classes)
        y_prob = np.full((images, classes), 0.1 / (classes - 1), np.float32)
        y_prob[np.arange(images), predicted] = 0.9
        folder = root / dataset / backbone / strategy / augmentation / f"seed{seed}"
        folder.mkdir(parents=True)
        np.savez_compressed(folder / "predictions.npz", y_true=y_true, y_prob=y_prob)
        metrics = {
            "status": "ok",
            "run": {"dataset": dataset, "backbone": backbone, "strategy": strategy,
                    "augmentation": augmentation, "seed": seed},
            "classes": [str(c) for c in range(classes)],
            "pretrained": pretrained,
            "train_seconds": seconds,
            "val": {"n": 50, "accuracy": validation, "loss": 1 - validation, "roc_auc": auc},
            "test": {"n": images, "accuracy": float(right.mean()), "loss": 0.5},
        }  # fmt: skip
        (folder / "metrics.json").write_text(json.dumps(metrics))
        paths.append(folder / "metrics.json")
    return paths


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
    assert list(cells["verdict"]) == ["selected", "tied", "worse"]
    assert set(cells["criterion"]) == {"val_accuracy"}  # 3 classes
    top = cells.iloc[0]
    assert top["test_accuracy"] == pytest.approx((0.90 + 0.91 + 0.90) / 3)
    assert top["ci_low"] < top["test_accuracy"] < top["ci_high"]
    tied = cells.iloc[1]
    assert tied["diff_low"] < 0 < tied["diff_high"]
    assert tied["difference"] == pytest.approx(0.91 * 2 / 3 + 0.90 / 3 - top["test_accuracy"])
    assert not tied["equivalent"] and tied["seeds_to_resolve"] >= 2
    worse = cells.iloc[2]
    assert worse["diff_high"] < -0.1 and math.isnan(worse["seeds_to_resolve"])


def test_pairwise_table_has_every_ordered_pair_with_its_interval(hand_made):
    table = pairs.pairwise_table(hand_made, margin=0.01, reps=500)
    assert len(table) == 6  # 3 cells, ordered pairs
    pair = table.set_index(["a", "b"])
    worse = pair.loc[("cnn/scratch/none", "mnv2/fine_tune/none")]
    assert worse["verdict"] == "worse" and worse["diff_high"] < -0.1
    assert worse["difference"] == pytest.approx((2.11 - 2.71) / 3)
    back = pair.loc[("mnv2/fine_tune/none", "cnn/scratch/none")]
    assert back["verdict"] == "better"
    assert (back["diff_low"], back["diff_high"]) == pytest.approx(
        (-worse["diff_high"], -worse["diff_low"])
    )
    tied = pair.loc[("mnv2/feature_extraction/none", "mnv2/fine_tune/none")]
    assert tied["verdict"] == "tied" and tied["diff_low"] < 0 < tied["diff_high"]
    # the same as the cell table's difference to the selected cell (one bootstrap seed)
    cells = assess.cell_table(hand_made, margin=0.01, reps=500).set_index("strategy")
    assert (tied["diff_low"], tied["diff_high"]) == pytest.approx(
        tuple(cells.loc["feature_extraction", ["diff_low", "diff_high"]]), abs=0.01
    )


def test_verdict_table(hand_made):
    table = assess.verdict_table(hand_made, margin=0.01, reps=500)
    assert len(table) == 1
    row = table.iloc[0]
    # validation chooses, although feature_extraction has the higher test accuracy
    assert row["selected"] == "mnv2/fine_tune/none"
    assert row["tied_with"].startswith("mnv2/feature_extraction/none [")
    assert "seeds to resolve" in row["tied_with"]
    assert "scratch" not in row["tied_with"]
    assert row["better_on_test"] == ""
    assert row["best_pretrained"] == "mnv2/fine_tune/none"
    assert row["best_scratch"] == "cnn/scratch/none"
    assert row["transfer_gain"] == pytest.approx((2.71 - 2.11) / 3)
    assert row["gain_low"] > 0.1 and row["gain_verdict"] == "better"
    assert row["cheapest_tied"] == "mnv2/feature_extraction/none"  # 10 s, tied with the best
    assert row["cheapest_seconds"] == 10
    text = verdict_page.front_section(table)
    assert text.startswith("Verdict\n-------\n")
    assert "``mnv2/fine_tune/none``, test accuracy 0.9033" in text
    assert "The budget answer: ``mnv2/feature_extraction/none``" in text


def test_a_cell_better_on_test_is_reported_not_chosen(tmp_path):
    paths = [
        *write_run(tmp_path, "a/fine_tune/none", accuracy_per_seed=[0.70, 0.71, 0.70],
                   val=[0.9, 0.9, 0.9], seconds=5, pretrained=True),
        *write_run(tmp_path, "a/scratch/none", accuracy_per_seed=[0.90, 0.91, 0.90],
                   val=[0.8, 0.8, 0.8], seconds=5, pretrained=False),
    ]  # fmt: skip
    row = assess.verdict_table(runs.collect_runs(paths), reps=500).iloc[0]
    assert row["selected"] == "a/fine_tune/none" and row["tied_with"] == ""
    assert row["better_on_test"] == "a/scratch/none"
    text = verdict_page.front_section(pd.DataFrame([row]))
    assert "No other cell is tied with it." in text
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


def test_friedman_nemenyi_and_cd_diagram(tmp_path):
    scores = {"a": [0.9, 0.8, 0.95, 0.7], "b": [0.85, 0.75, 0.9, 0.65], "c": [0.5, 0.6, 0.7, 0.6]}
    records = [
        {"dataset": f"d{i}", "rank": rank, "strategy": strategy, "test_accuracy": values[i]}
        for rank, (strategy, values) in enumerate(scores.items(), start=1)
        for i in range(4)
    ]
    result = across.across_datasets(pd.DataFrame(records))
    assert list(result.ranks.index) == ["a", "b", "c"] and list(result.ranks) == [1, 2, 3]
    # perfectly consistent ranks, N = 4, k = 3: chi² = 12N/(k(k+1)) sum R² - 3N(k+1) = 8
    assert result.statistic == pytest.approx(8.0)
    assert result.p_value == pytest.approx(stats.chi2.sf(8.0, 2))
    # Demšar (2006) table 5: q_0.05 = 2.343 for k = 3; CD = q sqrt(k(k+1)/(6N))
    assert result.critical_difference == pytest.approx(2.343 * math.sqrt(12 / 24), abs=1e-3)
    assert result.nemenyi.loc["a", "c"] < 0.05 < result.nemenyi.loc["a", "b"]
    png = verdict_figure.cd_diagram(result, tmp_path / "cd.png")
    from PIL import Image

    image = np.asarray(Image.open(png).convert("L"))
    assert image.shape[1] > 300 and image.min() < 100 < image.max()  # drawn, not blank
    with pytest.raises(ValueError, match=r">= 2 datasets and >= 3 strategies.*\['d0'\]"):
        across.across_datasets(pd.DataFrame([r for r in records if r["dataset"] == "d0"]))


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
    monkeypatch.setattr(assess, "bootstrap", lambda *a, **k: calls.append(1) or original(*a, **k))
    table = verdict_page.write_verdict(
        study, tmp_path / "verdict", tmp_path / "ranking", tmp_path / "front.rst", reps=300
    )
    assert len(calls) == 2  # one per budget (the dataset's only one)
    monkeypatch.setattr(assess, "bootstrap", original)
    assert table[["budget", "selected", "gain_verdict"]].values.tolist() == [
        ["n5", "cnn/scratch/none", "worse"],
        ["all", "mnv2/fine_tune/none", "better"],
    ]
    assert table["seeds"].tolist() == [3, 3]
    assert table["transfer_gain"].iloc[0] == pytest.approx((1.52 - 2.11) / 3)
    front = (tmp_path / "front.rst").read_text()
    assert "**digits** at label budget n5: chosen by mean validation accuracy over seeds: " in front
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
    monkeypatch.setattr(pairs, "bootstrap", lambda *a, **k: calls.append(1) or original(*a, **k))
    reused = pairs.batchnorm_table(study, margin=0.01, bootstraps=boots)
    pd.testing.assert_frame_equal(reused, table)
    pair_table = pairs.pairwise_table(study, margin=0.01, bootstraps=boots)
    assert calls == []
    monkeypatch.setattr(pairs, "bootstrap", original)
    row = pair_table.set_index(["a", "b"]).loc[("mn/fine_tune/none", "mn/fine_tune_bn_train/none")]
    assert (row["diff_low"], row["diff_high"]) == (
        table.iloc[0]["diff_low"],
        table.iloc[0]["diff_high"],
    )
    # the same study without the trained twin has no pair
    alone = study[study["strategy"] != "fine_tune_bn_train"]
    assert pairs.batchnorm_table(alone, reps=100).empty
