"""Every transferability score at the scales it is used (issue 35): H-score (plain and
shrunk) and k-NN with N < D and N > D and the features scaled by 1e-6 and 1e6 (and by
1e-17, a deep random-init backbone's magnitude); NCE and LEEP with fewer and more target
images than source classes and the source logits scaled by 1e-6 and 1e6. LogME's own
scale tests are in tests/test_logme.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import softmax

from tlbench.analysis.transferability import cache
from tlbench.analysis.transferability import scores as T

SCALES = (1e-6, 1e6)
REGIMES = {"N<D": (30, 80), "N>D": (200, 20)}


def relu_features(n: int, d: int, classes: int = 3, seed: int = 0, signal: float = 0.7):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centres = rng.normal(size=(classes, d))
    return np.abs(rng.normal(size=(n, d)) + signal * centres[y]), y


@pytest.mark.parametrize("regime", REGIMES)
def test_hscores_do_not_depend_on_the_scale(regime):
    n, d = REGIMES[regime]
    f, y = relu_features(n, d, seed=n)
    shrunk = T.hscore(f, y, shrinkage=True)
    for scale in SCALES:
        assert T.hscore(f * scale, y, shrinkage=True) == pytest.approx(shrunk, rel=1e-9)
        if n - 1 <= d:  # rank N - 1: C - 1 for any features, refused at every scale
            with pytest.raises(T.DegenerateScore, match="rank N - 1"):
                T.hscore(f * scale, y)
        else:
            assert T.hscore(f * scale, y) == pytest.approx(T.hscore(f, y), rel=1e-9)


@pytest.mark.parametrize("regime", REGIMES)
def test_knn_accuracy_is_the_cosine_one_at_every_scale(regime):
    """Rows of wildly different norms (x0.05 .. x20) whose class is in their direction:
    cosine and Euclidean neighbours differ. The accuracy is the same at 1e-17, 1e-6 and
    1e6 as at 1 (scikit-learn's normalize leaves rows of norm < 2e-15 unnormalised:
    seen failing at 1e-17 with it)."""
    n, d = REGIMES[regime]
    f, y = relu_features(2 * n, d, seed=d, signal=1.5)
    f *= np.exp(np.random.default_rng(1).uniform(-3, 3, size=(2 * n, 1)))
    train, val, y_train, y_val = f[:n], f[n:], y[:n], y[n:]
    base = T.knn_accuracy(train, y_train, val, y_val)
    for scale in (1e-17, *SCALES):
        got = T.knn_accuracy(train * scale, y_train, val * scale, y_val)
        assert got == base, scale


def test_knn_refuses_features_that_all_point_the_same_way():
    """Rows proportional to one vector (norms differ): normalised, they are equal to
    rounding and every neighbour is a tie broken by noise."""
    rng = np.random.default_rng(0)
    v = rng.uniform(size=16)
    f = rng.uniform(1, 5, size=(12, 1)) * v
    y = np.arange(12) % 2
    with pytest.raises(T.DegenerateScore, match="points the same way"):
        T.knn_accuracy(f, y, f, y, k=3)
    record = cache.score_features(f, y, f, y, k=3)
    assert math.isnan(record["knn_accuracy"]) and "points the same way" in record["note"]


@pytest.mark.parametrize("n", [15, 200])  # fewer and more target images than Z = 20
def test_nce_and_leep_at_the_scales_of_the_source_logits(n):
    """Source logits scaled by 1e-6 give near-uniform probabilities: LEEP is then the
    labels-only value (mean log prior of the target labels); by 1e6, one-hot ones: LEEP
    equals NCE. NCE, on the argmax, is the same at every positive scale."""
    rng = np.random.default_rng(n)
    y = np.arange(n) % 3
    logits = rng.normal(size=(n, 20)) + 2.0 * np.eye(20)[y * 5]
    nce = T.nce(logits.argmax(axis=1), y)
    prior = np.bincount(y) / n
    labels_only = float(np.mean(np.log(prior[y])))
    values = {}
    for scale in (1e-6, 1.0, 1e6):
        probs = softmax(logits * scale, axis=1)
        record = cache.score_source_outputs(probs, y)
        assert record["nce"] == pytest.approx(nce, rel=1e-12)
        values[scale] = record["leep"]
    assert values[1e-6] == pytest.approx(labels_only, abs=1e-5)
    assert values[1e6] == pytest.approx(nce, rel=1e-9)
    assert labels_only < values[1.0] <= nce + 1e-12
