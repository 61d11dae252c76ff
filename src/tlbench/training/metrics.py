"""Classification metrics of one split, as plain JSON-ready Python values.

:func:`classification_metrics` takes the true labels and the predicted class
probabilities of a split and returns accuracy, balanced accuracy and macro-F1
(scikit-learn's, :func:`label_metrics`: for imbalanced data), cross-entropy loss,
top-5 accuracy (when there are at least 5 classes), ROC AUC (binary: AUC of the
positive class, i.e. class index 1; otherwise macro one-vs-rest), per-class
accuracy and the confusion matrix (rows = true class, columns = predicted).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Probabilities are clipped to ``[EPSILON, 1 - EPSILON]`` before the log in the loss.
EPSILON = 1e-7
#: Rounding slack allowed outside [0, 1] in ``y_prob`` (float16/float32 softmax outputs).
PROB_TOLERANCE = 1e-3


def _validate(
    y_true: Any, y_prob: Any, classes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Check shapes and ranges; return ``(labels int64 (N,), probs float64 (N, C), classes)``."""
    classes = [str(c) for c in classes]
    n_classes = len(classes)
    if n_classes < 2:
        raise ValueError(f"classes must name at least 2 classes, got {classes!r}")
    if len(set(classes)) != n_classes:
        raise ValueError(f"class names must be unique, got {classes!r}")
    labels = np.asarray(y_true)
    probs = np.asarray(y_prob, dtype=np.float64)
    if labels.ndim != 1:
        raise ValueError(f"y_true must be a 1-D array of class indices, got shape {labels.shape}")
    if labels.size == 0:
        raise ValueError("y_true is empty: cannot compute metrics of an empty split")
    if labels.dtype.kind == "f":
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise ValueError("y_true must hold integer class indices, got non-integer floats")
    elif labels.dtype.kind not in "iu":
        raise ValueError(f"y_true must hold integer class indices, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if probs.ndim != 2:
        raise ValueError(f"y_prob must be an N x C array, got shape {probs.shape}")
    if probs.shape[0] != labels.shape[0]:
        raise ValueError(
            f"y_true has {labels.shape[0]} samples but y_prob has {probs.shape[0]} rows"
        )
    if probs.shape[1] != n_classes:
        raise ValueError(
            f"y_prob has {probs.shape[1]} columns but there are {n_classes} classes: {classes!r}"
        )
    bad = labels[(labels < 0) | (labels >= n_classes)]
    if bad.size:
        raise ValueError(
            f"y_true holds class index {int(bad[0])}, outside 0..{n_classes - 1} "
            f"(classes: {classes!r})"
        )
    if not np.all(np.isfinite(probs)):
        raise ValueError("y_prob holds NaN or infinite values")
    if probs.min() < -PROB_TOLERANCE or probs.max() > 1.0 + PROB_TOLERANCE:
        raise ValueError(
            f"y_prob must hold probabilities in [0, 1], got values in "
            f"[{probs.min():.4g}, {probs.max():.4g}] (logits instead of softmax outputs?)"
        )
    return labels, probs, classes


def _roc_auc(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> tuple[Any, str | None]:
    """ROC AUC (binary: positive class = index 1; else macro one-vs-rest) or ``(None, why)``."""
    # deferred: scikit-learn only where ROC AUC is computed
    from sklearn.metrics import roc_auc_score

    present = np.unique(labels)
    missing = [classes[i] for i in range(len(classes)) if i not in set(present.tolist())]
    if missing:
        return None, (
            "ROC AUC undefined: class(es) absent from the true labels: " + ", ".join(missing)
        )
    if len(classes) == 2:
        return float(roc_auc_score(labels, probs[:, 1])), None
    # Macro one-vs-rest; every class is present, so every binary AUC is defined.
    per_class = [roc_auc_score(labels == k, probs[:, k]) for k in range(len(classes))]
    return float(np.mean(per_class)), None


def label_metrics(labels: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """``balanced_accuracy`` (mean per-class recall over the classes in ``labels``) and
    ``macro_f1`` (mean per-class F1 over the classes in ``labels`` or ``predicted``; a
    class never predicted has F1 0), both scikit-learn's
    (``balanced_accuracy_score``, ``f1_score(average="macro")``)."""
    # deferred: scikit-learn only where the metrics are computed
    from sklearn.metrics import balanced_accuracy_score, f1_score

    return {
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0)),
    }


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> list[list[int]]:
    """Confusion matrix as a list of lists; rows are true classes, columns predicted."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix.tolist()


def classification_metrics(y_true: Any, y_prob: Any, classes: Sequence[str]) -> dict[str, Any]:
    """Metrics of one split from integer labels ``y_true`` (N,) and probabilities ``y_prob`` (N, C).

    Returns a dict of plain Python values: ``n``, ``accuracy``,
    ``balanced_accuracy``, ``macro_f1`` (:func:`label_metrics`), ``loss`` (mean
    categorical cross-entropy with probabilities clipped to ``[1e-7, 1-1e-7]``),
    ``top5_accuracy`` (only when C >= 5), ``roc_auc`` (``None`` plus
    ``roc_auc_note`` when undefined), ``per_class_accuracy`` ({class: accuracy},
    ``None`` for a class absent from ``y_true``) and ``confusion_matrix``.
    Raises ``ValueError`` naming the problem on malformed input.
    """
    labels, probs, classes = _validate(y_true, y_prob, classes)
    n, n_classes = probs.shape
    predicted = np.argmax(probs, axis=1)
    correct = predicted == labels

    true_prob = np.clip(probs[np.arange(n), labels], EPSILON, 1.0 - EPSILON)
    result: dict[str, Any] = {
        "n": int(n),
        "accuracy": float(np.mean(correct)),
        **label_metrics(labels, predicted),
        "loss": float(-np.mean(np.log(true_prob))),
    }
    if n_classes >= 5:
        # Rank of the true class: number of classes with a strictly larger probability.
        larger = np.sum(probs > probs[np.arange(n), labels][:, None], axis=1)
        result["top5_accuracy"] = float(np.mean(larger < 5))

    auc, note = _roc_auc(labels, probs, classes)
    result["roc_auc"] = auc
    if note is not None:
        result["roc_auc_note"] = note

    per_class: dict[str, float | None] = {}
    for index, name in enumerate(classes):
        mask = labels == index
        per_class[name] = float(np.mean(correct[mask])) if mask.any() else None
    result["per_class_accuracy"] = per_class
    result["confusion_matrix"] = confusion_matrix(labels, predicted, n_classes)
    return result
