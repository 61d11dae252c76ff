"""Label budgets (tlbench.datasets.budget): nested stratified subsets, parse-time checks, the
study axis (paths, specs), the pipeline hook, the feature cache shared by budgets."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from test_study import base_config, error_of

from tlbench.core.errors import SpecError
from tlbench.datasets import budget
from tlbench.models.inputs import apply_budget, load_prepared
from tlbench.study.load import load_study
from tlbench.training.spec import budget_seed, resolve_spec

LABELS = np.repeat(np.arange(4), [30, 12, 7, 50])  # unbalanced: class 2 has 7 images
np.random.default_rng(1).shuffle(LABELS)


@pytest.mark.filterwarnings("ignore:label budget")
def test_subsets_are_nested_and_stratified():
    previous = None
    for k in (1, 5, 7, 10, 25, 100):
        idx = budget.subset_indices(LABELS, k, seed=3)
        counts = np.bincount(LABELS[idx], minlength=4)
        assert counts.tolist() == [min(k, n) for n in (30, 12, 7, 50)], k
        assert len(np.unique(idx)) == len(idx) and np.all(np.diff(idx) > 0)
        if previous is not None:
            assert set(previous) <= set(idx), f"the {k} per class do not contain the smaller budget"
        previous = idx


def test_fractions_are_nested_per_class_and_among_the_counts():
    small = budget.subset_indices(LABELS, 0.1, seed=0)
    large = budget.subset_indices(LABELS, 0.5, seed=0)
    assert set(small) <= set(large)
    assert np.bincount(LABELS[large], minlength=4).tolist() == [15, 6, 4, 25]
    assert np.bincount(LABELS[small], minlength=4).tolist() == [3, 1, 1, 5]  # >= 1 per class
    # a fraction and a count drawing the same number take the same images
    assert set(budget.subset_indices(LABELS, 1, 0)) <= set(small)


def test_subset_depends_on_the_split_seed_only():
    a = budget.subset_indices(LABELS, 5, seed=0)
    assert np.array_equal(a, budget.subset_indices(LABELS, 5, seed=0))
    assert not np.array_equal(a, budget.subset_indices(LABELS, 5, seed=1))


def test_a_budget_larger_than_a_class_takes_it_whole_and_says_so():
    with pytest.warns(UserWarning, match=r"exceeds the training images of 2 class\(es\) \(b, c\)"):
        idx, record = budget.subset(LABELS, 20, 0, classes=["a", "b", "c", "d"])
    assert record["budget"] == "n20"
    assert record["budget_per_class_used"] == {"a": 20, "b": 12, "c": 7, "d": 20}
    assert record["budget_capped"] == ["b", "c"]
    assert (record["budget_per_class_min"], record["budget_per_class_max"]) == (7, 20)
    assert len(idx) == 59
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert budget.subset(LABELS, 7, 0)[1]["budget_capped"] == []


@pytest.mark.parametrize(
    ("value", "named"),
    [(0, "0 images per class"), (1.5, "1.5 is neither"), (-0.2, "-0.2 is neither"),
     ("half", "'half' is not a label budget"), (True, "True is not")],
)  # fmt: skip
def test_bad_budgets_are_named(value, named):
    with pytest.raises(budget.BudgetError, match=named):
        budget.check_budget(value, "datasets.x.budgets[1]")


def test_labels_round_trip():
    for value in (5, 100, 0.25, 0.05, "all"):
        text = budget.label(value)
        assert budget.from_label(text) == value
        assert budget.from_suffix(budget.path_suffix(text)) == text
    assert budget.label(10.0) == "n10" and budget.path_suffix("all") == ""


# --------------------------------------------------------------------------- the study axis


def budget_config(budgets) -> dict:
    config = base_config()
    config["datasets"]["digits"]["budgets"] = budgets
    return config


def test_budgets_are_an_axis_of_the_runs():
    plain = load_study(base_config())
    study = load_study(budget_config([5, 0.5, "all"]))
    assert len(study.runs) == 3 * len(plain.runs)
    paths = {study.run_path(r) for r in study.runs}
    # budget all keeps the path runs had before budgets existed
    assert {plain.run_path(r) for r in plain.runs} <= paths
    assert "out/runs/digits/cnn_scratch/scratch/none/seed1_n5" in paths
    assert "out/runs/digits/cnn_scratch/scratch/none/seed1_f0.5" in paths
    run = study.run("digits", "cnn_scratch", "scratch", "none", "1", "_n5")
    assert run.budget == "n5" and run.names["budget"] == "n5"
    spec = study.run_spec(run)
    assert spec["dataset"]["budget"] == 5
    assert resolve_spec(spec)["dataset"]["budget"] == 5
    # the subset's seed is the run's, named in the spec (a job param: runs drawn with the
    # split seed before are redone)
    assert spec["dataset"]["budget_seed"] == 1 and budget_seed(resolve_spec(spec)) == 1
    every = study.run("digits", "cnn_scratch", "scratch", "none", 1, "")
    assert "budget" not in study.run_spec(every)["dataset"] and "budget" not in every.names
    assert "budget_seed" not in study.run_spec(every)["dataset"]
    # the loader does not see the axis; the feature cache is one per (dataset, backbone)
    assert "budgets" not in study.dataset_config("digits")
    assert plain.feature_pairs() == study.feature_pairs()


def test_bad_budgets_in_the_config_name_the_key_path():
    message = error_of(budget_config([5, 0, "most", 5.0]))
    assert "datasets.digits.budgets[1]: 0 images per class" in message
    assert "datasets.digits.budgets[2]: 'most' is not a label budget" in message
    assert "datasets.digits.budgets[3]: 5.0 repeats budget n5 of datasets.digits.budgets[0]" in (
        message
    )


def test_budgets_and_tuned_strategies_are_an_error():
    config = budget_config([5, "all"])
    config["strategies"]["scratch"]["tuning"] = {
        "tuner": "hyperband",
        "max_epochs": 2,
        "space": {"learning_rate": {"min": 1e-4, "max": 1e-2}},
    }
    assert "matrix[0]: tuned strategy scratch on dataset(s) with label budgets (digits)" in (
        error_of(config)
    )


def test_bad_budget_in_a_run_spec_is_a_spec_error(tiny_prepared):
    from engine_helpers import tiny_spec

    spec = tiny_spec(tiny_prepared)
    spec["dataset"]["budget"] = 1.0000001
    with pytest.raises(SpecError, match=r"dataset.budget: 1.0000001 is neither"):
        resolve_spec(spec)
    spec["dataset"].update(budget=5, budget_seed=-1)
    with pytest.raises(SpecError, match=r"dataset.budget_seed: -1 must be null or an integer"):
        resolve_spec(spec)
    spec["dataset"]["budget_seed"] = 7
    assert budget_seed(resolve_spec({**spec, "seed": 2})) == 7
    spec["dataset"]["budget_seed"] = None
    assert budget_seed(resolve_spec({**spec, "seed": 2})) == 2


# --------------------------------------------------------------------------- the pipeline hook


def test_apply_budget_cuts_the_train_split_only(tiny_prepared):
    data = load_prepared(tiny_prepared)
    cut, record = apply_budget(data, 3, seed=4)
    x, y = cut.split("train")
    full_x, full_y = data.split("train")
    idx = budget.subset_indices(full_y, 3, 4)
    assert np.bincount(y).tolist() == [3, 3, 3]
    np.testing.assert_array_equal(x, full_x[idx])
    for name in ("val", "test"):
        for a, b in zip(cut.split(name), data.split(name), strict=True):
            np.testing.assert_array_equal(a, b)
    assert record["budget_per_class_used"] == dict.fromkeys(data.classes, 3)
    whole, record = apply_budget(data, None, seed=4)
    assert whole is data and record["budget"] == "all"
    assert record["budget_per_class_mean"] == len(full_y) / 3


def test_transferability_compares_scores_with_the_whole_split_runs():
    import pandas as pd

    from tlbench.analysis.transferability.tau import measured_accuracy

    study = pd.DataFrame(
        {"dataset": "d", "backbone": "m", "strategy": "fe", "augmentation": "none",
         "seed": [0, 1, 0, 1], "budget": ["all", "all", "n5", "n5"], "status": "ok",
         "val_accuracy": [0.9, 0.8, 0.1, 0.2], "test_accuracy": [0.9, 0.7, 0.1, 0.1]}
    )  # fmt: skip
    row = measured_accuracy(study).iloc[0]
    assert row["runs"] == 2
    assert (row["val_accuracy"], row["test_accuracy"]) == pytest.approx((0.85, 0.8))


def test_each_run_seed_draws_its_own_images_nested_within_the_seed(tiny_prepared):
    """Budget subsets come from the run's seed, not the dataset's split seed: the seeds
    of a cell train on different images (so a budget curve carries which images were
    labelled), and within one seed 2 per class are among its 3 per class."""
    data = load_prepared(tiny_prepared)
    draws = {
        (k, seed): apply_budget(data, k, seed)[0].train_indices for k in (2, 3) for seed in (0, 1)
    }
    assert not np.array_equal(draws[3, 0], draws[3, 1])
    for seed in (0, 1):
        assert set(draws[2, seed]) < set(draws[3, seed])
    assert apply_budget(data, 3, seed=1)[1]["budget_seed"] == 1
    # the split seed no longer decides: the same draw for every split seed of the manifest
    assert data.manifest["seed"] == 0
    np.testing.assert_array_equal(draws[3, 1], budget.subset_indices(data.split("train")[1], 3, 1))
