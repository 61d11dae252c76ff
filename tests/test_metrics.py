"""Tests of tlbench.training.metrics against scikit-learn and hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import log_loss, roc_auc_score, top_k_accuracy_score

from tlbench.training.metrics import classification_metrics


def _random_probs(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    logits = rng.normal(size=(n, c))
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def test_binary_hand_computed():
    y = np.array([0, 0, 1, 1])
    p = np.array([[0.9, 0.1], [0.4, 0.6], [0.35, 0.65], [0.8, 0.2]])
    m = classification_metrics(y, p, ["ants", "bees"])
    assert m["n"] == 4
    assert m["accuracy"] == pytest.approx(0.5)  # rows 0 and 2 correct
    expected_loss = -np.mean(np.log([0.9, 0.4, 0.65, 0.2]))
    assert m["loss"] == pytest.approx(expected_loss)
    # positives scored 0.65, 0.2; negatives 0.1, 0.6 -> pairs won: (0.65>0.1, 0.65>0.6, 0.2>0.1) = 3/4
    assert m["roc_auc"] == pytest.approx(0.75)
    assert "roc_auc_note" not in m
    assert "top5_accuracy" not in m
    assert m["per_class_accuracy"] == {"ants": 0.5, "bees": 0.5}
    assert m["confusion_matrix"] == [[1, 1], [1, 1]]


def test_multiclass_matches_sklearn():
    rng = np.random.default_rng(0)
    n, c = 200, 7
    y = np.concatenate([np.arange(c), rng.integers(0, c, size=n - c)])
    p = _random_probs(rng, n, c)
    classes = [f"c{i}" for i in range(c)]
    m = classification_metrics(y, p, classes)
    pred = p.argmax(axis=1)
    assert m["accuracy"] == pytest.approx(np.mean(pred == y))
    assert m["loss"] == pytest.approx(log_loss(y, p, labels=list(range(c))))
    assert m["top5_accuracy"] == pytest.approx(top_k_accuracy_score(y, p, k=5))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert m["confusion_matrix"] == sk_confusion(y, pred, labels=list(range(c))).tolist()
    for k, name in enumerate(classes):
        assert m["per_class_accuracy"][name] == pytest.approx(np.mean(pred[y == k] == k))


def test_json_ready_plain_types():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, size=50).astype(np.int32)
    y[:5] = np.arange(5)
    m = classification_metrics(y, _random_probs(rng, 50, 5).astype(np.float32), list("abcde"))
    json.dumps(m)  # raises on numpy scalars
    assert type(m["accuracy"]) is float and type(m["n"]) is int
    assert all(type(v) is int for row in m["confusion_matrix"] for v in row)


def test_loss_clips_zero_probability():
    m = classification_metrics([0, 1], [[0.0, 1.0], [0.0, 1.0]], ["a", "b"])
    assert math.isfinite(m["loss"])
    assert m["loss"] == pytest.approx(-np.log(1e-7) / 2, rel=1e-6)


def test_roc_auc_undefined_when_class_absent():
    y = [0, 0, 1, 1]
    p = _random_probs(np.random.default_rng(2), 4, 3)
    m = classification_metrics(y, p, ["a", "b", "c"])
    assert m["roc_auc"] is None
    assert "c" in m["roc_auc_note"]
    assert m["per_class_accuracy"]["c"] is None


@pytest.mark.parametrize(
    ("y", "p", "classes", "message"),
    [
        ([0, 1], [[0.5, 0.5]], ["a", "b"], "2 samples but y_prob has 1 rows"),
        ([0, 1], [[0.5, 0.5, 0.0]] * 2, ["a", "b"], "3 columns but there are 2 classes"),
        ([0, 2], [[0.5, 0.5]] * 2, ["a", "b"], "class index 2, outside 0..1"),
        ([[0], [1]], [[0.5, 0.5]] * 2, ["a", "b"], "1-D array"),
        ([], np.zeros((0, 2)), ["a", "b"], "empty"),
        ([0, 1], [0.5, 0.5], ["a", "b"], "N x C"),
        ([0.5, 1], [[0.5, 0.5]] * 2, ["a", "b"], "integer class indices"),
        ([0, 1], [[np.nan, 0.5]] * 2, ["a", "b"], "NaN"),
        ([0, 1], [[2.5, -1.0]] * 2, ["a", "b"], "probabilities in \\[0, 1\\]"),
        ([0, 0], [[1.0]] * 2, ["a"], "at least 2 classes"),
        ([0, 1], [[0.5, 0.5]] * 2, ["a", "a"], "unique"),
    ],
)
def test_bad_input_is_a_clear_error(y, p, classes, message):
    with pytest.raises(ValueError, match=message):
        classification_metrics(np.asarray(y), p, classes)


def _imbalanced() -> tuple[np.ndarray, np.ndarray]:
    """An imbalanced three-class split: 12 of class 0, 4 of class 1, 2 of class 2;
    the predictions favour class 0 (a class-0-always model scores 0.67 accuracy).
    Class 2 is never predicted right and class 1 is over-predicted."""
    y = np.array([0] * 12 + [1] * 4 + [2] * 2)
    predicted = np.array([0] * 11 + [1] + [1, 1, 0, 0] + [0, 1])
    return y, np.eye(3)[predicted] * 0.9 + 0.1 / 3


def test_balanced_accuracy_and_macro_f1_equal_sklearns_on_imbalanced_labels():
    from sklearn.metrics import balanced_accuracy_score, f1_score

    y, p = _imbalanced()
    m = classification_metrics(y, p, ["a", "b", "c"])
    predicted = p.argmax(axis=1)
    # by hand: recalls 11/12, 2/4, 0/2 -> (11/12 + 1/2 + 0) / 3
    assert m["balanced_accuracy"] == pytest.approx((11 / 12 + 0.5 + 0) / 3)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, predicted))
    assert m["macro_f1"] == pytest.approx(f1_score(y, predicted, average="macro"))
    assert m["accuracy"] == pytest.approx(13 / 18)
    assert m["balanced_accuracy"] < m["accuracy"]


@pytest.mark.parametrize("kind", ["balanced_accuracy", "macro_f1"])
def test_epoch_metric_equals_sklearn_over_batches(kind):
    """The Keras metric early stopping monitors accumulates batches to sklearn's value,
    a class absent from the labels (and one never predicted) included."""
    from sklearn.metrics import balanced_accuracy_score, f1_score

    from tlbench.training.epoch_metrics import ConfusionMetric

    y, p = _imbalanced()
    p = np.concatenate([p, np.zeros((len(p), 1))], axis=1)  # a 4th class nobody has
    metric = ConfusionMetric(4, kind)
    for start in range(0, len(y), 5):
        metric.update_state(y[start : start + 5], p[start : start + 5])
    predicted = p.argmax(axis=1)
    expected = (
        balanced_accuracy_score(y, predicted)
        if kind == "balanced_accuracy"
        else f1_score(y, predicted, average="macro", zero_division=0)
    )
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
    metric.reset_state()
    metric.update_state(y, np.eye(4)[y])
    assert float(metric.result()) == pytest.approx(1.0)


def test_epoch_roc_auc_is_close_to_sklearns():
    from tlbench.training.epoch_metrics import PositiveClassAUC

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    p1 = np.clip(0.3 * y + rng.uniform(0, 0.7, 300), 0, 1)
    metric = PositiveClassAUC()
    metric.update_state(y, np.column_stack([1 - p1, p1]))
    assert float(metric.result()) == pytest.approx(roc_auc_score(y, p1), abs=2e-3)
