"""Evaluation of a trained run: val and train metrics, then the test split, read
once and predicted once (:func:`evaluate`); a pilot run evaluates on val instead."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from tlbench.models.inputs import predict
from tlbench.training.metrics import classification_metrics


def predict_arrays(model: keras.Model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Predictions for in-memory arrays (e.g. cached features), float64."""
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), np.float64)


def count_params(variables: Sequence[Any]) -> int:
    return int(sum(math.prod(v.shape) for v in variables))


def split_metrics(y: np.ndarray, prob: np.ndarray, classes: list[str]) -> dict[str, Any]:

    return classification_metrics(y, prob, classes)


def evaluate(
    model: keras.Model,
    data: Any,
    classes: list[str],
    batch: int,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    head: keras.Model | None = None,
    head_features: Any = None,
    pilot: bool = False,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Val and train metrics, then the test split: read once, predicted once (timed).

    When ``head`` alone was trained on cached features (``head_features``),
    val and train predictions are the head's on those features: the same numbers
    as the whole model's (its backbone is frozen, in inference mode, and unchanged
    since the features were computed), without a second pass of the images through
    the backbone. The test split always goes through the saved classifier.

    ``pilot``: the test split is not opened; the validation split takes its place
    as the final evaluation (through the saved classifier, timed; its per-class
    accuracy, confusion matrix and ``predictions.npz``) and ``test`` is None.

    Where the dataset's images come in groups (``data.groups(split)``: GTSRB's
    tracks, a folder's ``groups`` pattern), each split's metrics get ``groups`` (how
    many) and ``predictions.npz`` the final split's group ids, ``groups``: the
    verdict resamples them whole and validation's standard error counts them.
    """
    final = "val" if pilot else "test"
    out: dict[str, Any] = {}
    cached = head_features
    if cached is not None and head is None:
        raise ValueError("evaluate: head_features without the head trained on them")
    val_labels: dict[str, np.ndarray] = {}
    for name in ("val", "train"):
        if name == final:
            continue
        x, y = splits[name]
        if cached is not None:
            prob = predict_arrays(head, getattr(cached, name), batch)
        else:
            prob = predict(model, x, batch)
        out[name] = split_metrics(np.asarray(y), prob, classes)
        if name == "val":  # the validation labels it predicted: the committed evidence
            val_labels = {
                "val_y_true": np.asarray(y, np.int64),
                "val_y_pred": np.argmax(prob, axis=1).astype(np.int64),
            }
            if prob.shape[1] == 2:
                val_labels["val_p_pos"] = prob[:, 1].astype(np.float32)
    out["train_val_predicted_from"] = "cached features" if cached is not None else "images"
    x_test, y_test = splits["val"] if pilot else data.split("test")
    start = time.perf_counter()
    prob = predict(model, x_test, batch)
    seconds = time.perf_counter() - start
    test = split_metrics(np.asarray(y_test), prob, classes)
    out[final] = test
    grouped = {name: data.groups(name) for name in ("val", final)}
    for name, ids in grouped.items():
        if ids is not None:
            out[name]["groups"] = int(len(np.unique(ids)))
    if pilot:
        out["test"] = None
    out["per_class_accuracy"] = test["per_class_accuracy"]
    out["confusion_matrix"] = test["confusion_matrix"]
    out["inference_images_per_second"] = round(len(x_test) / max(seconds, 1e-9), 2)
    predictions = {
        "y_true": np.asarray(y_test, np.int64),
        "y_prob": prob.astype(np.float32),
        "classes": np.asarray(classes),
        "split": np.asarray(final),
        **val_labels,
    }
    if grouped[final] is not None:
        predictions["groups"] = np.asarray(grouped[final])
    if val_labels and grouped["val"] is not None:
        predictions["val_groups"] = np.asarray(grouped["val"])
    return out, predictions
