"""The linear probe's maths (tlbench.models.probe): C chosen by cross-validation on the train
split (the validation split cannot move it), the folded weights reproduce the fitted model,
bad grids rejected, no test split in reach."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from tlbench.models import probe
from tlbench.models.probe import fit_linear_probe


def suppressor(n: int, shared: bool, rng: np.random.Generator):
    """Two features: x1 = signal + noise, x2 = that same noise on the training split
    (so an unregularised fit uses x1 - x2, perfect on train) but independent noise
    on the validation split (where only x1 helps: strong regularisation wins)."""
    y = np.arange(n) % 2
    signal = (2 * y - 1) + 0.3 * rng.normal(size=n)
    noise = 3 * rng.normal(size=n)
    if shared:
        return np.c_[signal + noise, noise], y
    return np.c_[signal + 0.3 * rng.normal(size=n), 3 * rng.normal(size=n)], y


@pytest.fixture(scope="module")
def suppressed():
    rng = np.random.default_rng(0)
    return (*suppressor(200, True, rng), *suppressor(200, False, rng))


def cv_correct(xt, yt, grid, folds, seed=0):
    """Held-out images right per C over stratified folds of the TRAIN split, computed
    independently of the probe (scaler fitted on each training fold)."""
    splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(xt, yt)
    correct = np.zeros(len(grid))
    for train_rows, held in splits:
        scaler = StandardScaler().fit(xt[train_rows])
        for i, c in enumerate(grid):
            m = LogisticRegression(C=c, max_iter=5000).fit(
                scaler.transform(xt[train_rows]), yt[train_rows]
            )
            correct[i] += np.sum(m.predict(scaler.transform(xt[held])) == yt[held])
    return correct


def test_c_is_the_cross_validation_argmax_on_train(suppressed):
    xt, yt, xv, yv = suppressed
    fit = fit_linear_probe(xt, yt, xv, yv)
    grid = np.array(fit.grid)
    assert grid[0] == pytest.approx(1e-6) and grid[-1] == pytest.approx(1e5)
    assert fit.folds == 5
    correct = cv_correct(xt, yt, fit.grid, 5)
    np.testing.assert_allclose(fit.cv_accuracy, correct / len(yt))
    assert fit.C == grid[np.argmax(correct)]
    assert all(len(a) == 5 for a in fit.cv_fold_accuracy)
    # the chosen model, refitted on all of train, scored once on val (reported only)
    scaler = StandardScaler().fit(xt)
    model = LogisticRegression(C=fit.C, max_iter=5000).fit(scaler.transform(xt), yt)
    assert fit.val_accuracy == pytest.approx(model.score(scaler.transform(xv), yv))


def test_validation_labels_cannot_move_the_chosen_c(suppressed):
    """The suppressor data make val prefer a small C (1e-3) and train a large one: the
    former probe chose C on val and followed any change of its labels. Now the choice,
    its CV record and the fitted weights are the same whatever the val labels."""
    xt, yt, xv, yv = suppressed
    rng = np.random.default_rng(1)
    base = fit_linear_probe(xt, yt, xv, yv)
    for labels in (1 - yv, rng.permutation(yv), np.zeros_like(yv)):
        moved = fit_linear_probe(xt, yt, xv, labels, num_classes=2)
        assert moved.C == base.C
        assert moved.cv_accuracy == base.cv_accuracy
        np.testing.assert_array_equal(moved.W, base.W)
    assert base.C >= 1.0  # not val's choice (1e-3)


def test_ties_go_to_the_smaller_c():
    """Separable classes: every C of the grid is right on every held-out image."""
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    x = rng.normal(size=(40, 3)) + 10.0 * y[:, None]
    fit = fit_linear_probe(x, y, x, y, grid=[100.0, 1.0, 10.0])
    assert fit.cv_accuracy == (1.0, 1.0, 1.0)
    assert fit.C == 1.0
    assert fit.grid == (1.0, 10.0, 100.0)


@pytest.mark.parametrize("per_class, folds", [(2, 2), (3, 3), (5, 5), (12, 5)])
def test_folds_fit_the_smallest_class(per_class, folds):
    rng = np.random.default_rng(per_class)
    y = np.r_[np.zeros(per_class, int), np.ones(20, int), np.full(20, 2)]
    x = rng.normal(size=(len(y), 4)) + y[:, None]
    fit = fit_linear_probe(x, y, x, y, grid=[0.1, 1.0])
    assert fit.folds == folds
    assert all(len(a) == folds for a in fit.cv_fold_accuracy)


def test_a_class_with_one_image_needs_a_one_value_grid():
    """One image of a class cannot be held out and trained on: an error naming the class;
    with a single C nothing is chosen and the probe fits (no folds, empty CV record)."""
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(6, int), np.ones(6, int), [2]]
    x = rng.normal(size=(len(y), 4)) + y[:, None]
    with pytest.raises(
        ValueError, match=r"y_train: class\(es\) \[2\] have a single training image"
    ):
        fit_linear_probe(x, y, x, y, grid=[0.1, 1.0])
    fit = fit_linear_probe(x, y, x, y, grid=[0.5])
    assert (fit.C, fit.folds, fit.cv_accuracy, fit.converged) == (0.5, 0, (), ())
    assert fit.record()["probe_cv_folds"] == 0


@pytest.mark.parametrize("classes", [2, 3])
def test_folded_weights_reproduce_predict_proba_on_raw_features(classes):
    rng = np.random.default_rng(classes)
    n, d = 90, 7
    y = np.arange(n) % classes
    centres = rng.normal(size=(classes, d))
    # features far from standard (offsets, scales), so a fold that forgot the scaler fails
    offset, scale = rng.normal(size=d) * 5, np.exp(rng.normal(size=d) * 2)
    x = (rng.normal(size=(n, d)) + 1.5 * centres[y]) * scale + offset
    xv = (rng.normal(size=(60, d)) + 1.5 * centres[np.arange(60) % classes]) * scale + offset
    fit = fit_linear_probe(x[:60], y[:60], xv, np.arange(60) % classes, grid=[1e-2, 1.0])
    assert fit.W.shape == (d, classes) and fit.b.shape == (classes,)
    scaler = StandardScaler().fit(x[:60])
    model = LogisticRegression(C=fit.C, max_iter=5000).fit(scaler.transform(x[:60]), y[:60])
    expected = model.predict_proba(scaler.transform(x))
    logits = x @ fit.W + fit.b
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(softmax, expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(fit.predict_proba(x), expected, atol=1e-6, rtol=0)
    assert (fit.predict(x) == model.predict(scaler.transform(x))).all()
    assert 0.2 < expected.min(axis=1).max()  # not all saturated: the check has teeth


@pytest.mark.parametrize(
    "grid, named",
    [
        ([], "[]"),
        ([1.0, 0.0], "0.0"),
        ([-1e-3], "-0.001"),
        ([1.0, math.nan], "nan"),
        ([math.inf], "inf"),
        (["1"], "'1'"),
        ([True], "True"),
        ([1.0, 1.0], "1.0"),
        ("1e-3", "'1e-3'"),
    ],
)
def test_bad_grid_is_rejected_naming_the_value(grid, named):
    x = np.random.default_rng(0).normal(size=(10, 3))
    y = np.arange(10) % 2
    with pytest.raises(ValueError, match="grid") as error:
        fit_linear_probe(x, y, x, y, grid=grid)
    assert named in str(error.value)


def test_the_test_split_is_not_an_argument():
    params = inspect.signature(fit_linear_probe).parameters
    assert list(params)[:4] == ["x_train", "y_train", "x_val", "y_val"]
    assert not [p for p in params if "test" in p.lower()]
    assert not [f for f in probe.ProbeFit.__dataclass_fields__ if "test" in f.lower()]


def test_bad_labels_and_shapes_are_named():
    x = np.random.default_rng(0).normal(size=(12, 3))
    y = np.arange(12) % 3
    with pytest.raises(ValueError, match=r"y_train: class\(es\) \[2\]"):
        fit_linear_probe(x, np.arange(12) % 2, x, y)
    with pytest.raises(ValueError, match="x_val: 2 features, x_train 3"):
        fit_linear_probe(x, y, x[:, :2], y)
    with pytest.raises(ValueError, match="num_classes: 2"):
        fit_linear_probe(x, y, x, y, num_classes=2)
    with pytest.raises(ValueError, match="x_train: 1 non-finite"):
        bad = x.copy()
        bad[0, 0] = np.nan
        fit_linear_probe(bad, y, x, y)


def test_fits_run_with_the_given_number_of_blas_threads(suppressed, monkeypatch):
    """Each fit is small: one BLAS thread by default (no spinning beside busy cores)."""
    from threadpoolctl import threadpool_info

    seen = []
    real_fit = LogisticRegression.fit

    def fit(self, *args, **kwargs):
        seen.append({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(LogisticRegression, "fit", fit)
    xt, yt, xv, yv = suppressed
    fit = fit_linear_probe(xt, yt, xv, yv, grid=[1e-3, 1.0])
    assert seen == [{1}] * (2 * fit.folds + 1)  # every fold of both C, then the refit
    with pytest.raises(ValueError, match="blas_threads: 0 must be a positive integer"):
        fit_linear_probe(xt, yt, xv, yv, blas_threads=0)
