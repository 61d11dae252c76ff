"""The one reader of a run folder: its metrics.json, history.csv and predictions.npz, with
the columns they hold.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlbench.core.run_folder import CURVE_COLUMNS
from tlbench.models.weights import random_label, random_seed


def read_predicted(run_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, predicted)`` of one run: its test labels and the most probable class
    (``argmax`` of ``y_prob``) of each test image, from ``predictions.npz`` (a run's own,
    or one unpacked from a study's evidence: ``y_pred``, the labels it predicted, in
    place of ``y_prob``; :mod:`tlbench.analysis.evidence`)."""
    path = Path(run_dir) / "predictions.npz"
    if not path.is_file():
        raise FileNotFoundError(f"run has no test predictions: {path}")
    with np.load(path) as data:
        y_true = np.asarray(data["y_true"])
        if "y_prob" not in data.files and "y_pred" in data.files:
            y_pred = np.asarray(data["y_pred"])
            if y_pred.shape != y_true.shape:
                raise ValueError(f"{path}: y_pred has shape {y_pred.shape}, y_true {y_true.shape}")
            return y_true, y_pred
        y_prob = np.asarray(data["y_prob"])
    if y_prob.ndim != 2 or len(y_prob) != len(y_true):
        raise ValueError(
            f"{path}: y_prob has shape {y_prob.shape}, expected ({len(y_true)}, classes)"
        )
    return y_true, np.argmax(y_prob, axis=1)


def read_groups(run_dir: str | os.PathLike) -> np.ndarray | None:
    """The test images' group ids of one run (``groups`` of ``predictions.npz``: images
    of one group, e.g. frames of one track, are not independent), or None when its
    dataset declares no groups."""
    path = Path(run_dir) / "predictions.npz"
    if not path.is_file():
        raise FileNotFoundError(f"run has no test predictions: {path}")
    with np.load(path) as data:
        return np.asarray(data["groups"]) if "groups" in data.files else None


def read_metrics(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A run folder's ``metrics.json`` (error naming the file when missing)."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"run folder {run_dir} has no metrics.json ({path})")
    return _metrics_object(path)


def _metrics_object(path: Path) -> dict[str, Any]:
    """The JSON object of a ``metrics.json`` file (errors name the file)."""
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(metrics, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(metrics).__name__}")
    return metrics


def run_label(metrics: dict[str, Any]) -> str:
    """``backbone/strategy/augmentation/seedN`` of a run (config-level names when known)."""
    row = run_row(metrics)
    return f"{row['backbone']}/{row['strategy']}/{row['augmentation']}/seed{row['seed']}"


def read_history(path: str | os.PathLike) -> pd.DataFrame:
    """A run's ``history.csv`` (``path``: the file, or its run folder) with the columns the
    curves need (error naming missing ones)."""
    path = Path(path)
    if path.is_dir():
        path = path / "history.csv"
    if not path.is_file():
        raise FileNotFoundError(f"history file not found: {path}")
    history = pd.read_csv(path)
    missing = [c for c in CURVE_COLUMNS if c not in history.columns]
    if missing:
        raise ValueError(
            f"{path} lacks column(s) {', '.join(missing)}; "
            f"expected {', '.join(CURVE_COLUMNS)} (docs/ARCHITECTURE.md)"
        )
    return history


#: Identity columns of a run, in table order.
ID_COLUMNS = ["dataset", "backbone", "strategy", "augmentation", "seed"]
#: Config-level identity plus the key settings read from the run spec.
SPEC_COLUMNS = [
    "backbone_arch",
    "weights",
    "strategy_name",
    "batchnorm",
    "augmentation_name",
    "head_type",
    "optimizer",
    "learning_rate",
    "schedule",
    "batch_size",
    "epochs",
    "input_size",
    "interpolation",
    "mixed_precision",
    "tuned",
]
SPLITS = ("test", "val", "train")
#: Scalar metrics of each split, always present as ``<split>_<metric>`` columns.
SPLIT_METRICS = (
    "n", "accuracy", "balanced_accuracy", "macro_f1", "loss", "top5_accuracy", "roc_auc"
)  # fmt: skip
#: Top-level scalars of metrics.json, always present as columns.
RUN_SCALARS = (
    "status",
    "reason",
    "resumed",
    "train_seconds",
    "inference_images_per_second",
    "epochs_run",
    "best_epoch",
    "params_total",
    "params_trainable",
    "pilot",
    # the cost (tlbench.training.cost)
    "forward_flops", "flops_method", "flops_note", "train_images", "train_passes",
    "train_images_seen", "flops_seen", "train_images_per_second", "wall_seconds",
    "cpu_seconds", "peak_rss_mb", "peak_rss_mb_at_start", "device_peak_memory_mb",
    "device_memory_note",
)  # fmt: skip
#: Training loss (history.csv, classifier phases) of the first and the last epoch.
HISTORY_LOSS_COLUMNS = ("history_loss_first", "history_loss_last")
#: Environment fields copied into ``env_<field>`` columns.
ENV_FIELDS = (
    "python",
    "tlbench",
    "keras",
    "backend",
    "tensorflow",
    "jax",
    "numpy",
    "platform",
    "cpu",
    "cpu_simd",
    "cpu_count",
    "memory_gb",
    "gpu",
    "hostname",
    "git_commit",
    "git_dirty",
)
#: BatchNorm policy of runs whose strategy has no ``batchnorm`` parameter (and of
#: runs recorded before it existed): feature_extraction and two_phase kept BatchNorm
#: in inference mode, every other strategy that trains trained it; direct trains nothing.
BATCHNORM_WITHOUT_PARAM = {"feature_extraction": "frozen", "two_phase": "frozen", "direct": None}
#: history.csv phases that are not the classifier's (their loss is a reconstruction MSE).
AUTOENCODER_PHASE_PREFIX = "ae_stage"


# --------------------------------------------------------------------------- collecting runs


def _name(value: Any) -> Any:
    """The ``name`` of a spec section (``{"name": ...}``) or the value itself."""
    return value.get("name") if isinstance(value, Mapping) else value


def _weights_label(weights: Any) -> Any:
    """A short string for a backbone's weights (``run:<folder>`` for pretrained runs,
    ``random(seed N)`` for ``{random: N}``)."""
    if isinstance(weights, Mapping):
        if "run" in weights:
            return f"run:{weights['run']}"
        seed = random_seed(weights)
        if seed is not None:
            return random_label(seed)
        return json.dumps(weights, sort_keys=True)
    return weights


def _batchnorm_label(strategy: Any) -> Any:
    """The run's BatchNorm policy (``frozen`` / ``train``; NaN for ``direct``)."""
    if not isinstance(strategy, Mapping):
        return np.nan
    params = strategy.get("params") or {}
    if "batchnorm" in params:
        return params["batchnorm"]
    if strategy.get("name") is None:
        return np.nan
    label = BATCHNORM_WITHOUT_PARAM.get(strategy["name"], "train")
    return np.nan if label is None else label


def history_losses(history_csv: str | os.PathLike) -> tuple[float, float]:
    """Training loss of the first and the last classifier epoch in ``history.csv``
    (autoencoder stages left out); NaN when the file or the losses are missing."""
    path = Path(history_csv)
    if not path.is_file():
        return np.nan, np.nan
    history = pd.read_csv(path)
    if history.empty or "loss" not in history:
        return np.nan, np.nan
    phase = history.get("phase", pd.Series([""] * len(history))).astype(str)
    loss = pd.to_numeric(history["loss"], errors="coerce")[
        ~phase.str.startswith(AUTOENCODER_PHASE_PREFIX)
    ].dropna()
    if loss.empty:
        return np.nan, np.nan
    return float(loss.iloc[0]), float(loss.iloc[-1])


def _scalar(value: Any) -> Any:
    """``value`` when it is a table-friendly scalar; lists become strings; dicts NaN."""
    if value is None:
        return np.nan
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return json.dumps(value, sort_keys=True, default=str)


def tuned_label(tuned: Any) -> str:
    """``name=value`` of every hyperparameter chosen by tuning (tlbench.tuning), or ""."""
    if not isinstance(tuned, Mapping) or not tuned:
        return ""
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in tuned.items()
    )


def run_row(metrics: Mapping[str, Any], path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Flatten one run's ``metrics.json`` content into a table row.

    The identity (dataset, backbone, strategy, augmentation, seed) comes from
    ``metrics["run"]`` (config-level names) when present, else from
    ``metrics["spec"]``. Every scalar of the ``test``/``val``/``train`` dicts
    becomes ``<split>_<key>``, every top-level scalar its own column.
    """
    spec = metrics.get("spec") or {}
    run = metrics.get("run") or {}
    training = spec.get("training") or {}
    backbone = spec.get("backbone") or {}
    row: dict[str, Any] = {
        "dataset": run.get("dataset", _name(spec.get("dataset"))),
        "backbone": run.get("backbone", _name(backbone)),
        "strategy": run.get("strategy", _name(spec.get("strategy"))),
        "augmentation": run.get("augmentation", _name(spec.get("augmentation"))),
        "seed": run.get("seed", spec.get("seed")),
        "backbone_arch": _name(backbone),
        "weights": _weights_label(backbone.get("weights"))
        if isinstance(backbone, Mapping)
        else None,
        "strategy_name": _name(spec.get("strategy")),
        "batchnorm": _batchnorm_label(spec.get("strategy")),
        "augmentation_name": _name(spec.get("augmentation")),
        "head_type": _scalar((spec.get("head") or {}).get("type")),
        "optimizer": training.get("optimizer"),
        "learning_rate": training.get("learning_rate"),
        "schedule": _name(training.get("schedule")),
        "batch_size": training.get("batch_size"),
        "epochs": training.get("epochs"),
        "input_size": training.get("input_size"),
        "interpolation": training.get("interpolation"),
        "mixed_precision": training.get("mixed_precision"),
        "tuned": tuned_label(spec.get("tuned")),
    }
    classes = metrics.get("classes")
    if isinstance(classes, list):
        row["num_classes"] = len(classes)
    elif isinstance(metrics.get("confusion_matrix"), list):
        row["num_classes"] = len(metrics["confusion_matrix"])
    else:
        row["num_classes"] = np.nan
    for key in RUN_SCALARS:
        row[key] = _scalar(metrics.get(key))
    for key, value in metrics.items():
        if key not in row and key not in SPLITS and isinstance(value, bool | int | float | str):
            row[key] = value
    for split in SPLITS:
        values = metrics.get(split) or {}
        for key in SPLIT_METRICS:
            row[f"{split}_{key}"] = _scalar(values.get(key))
        for key, value in values.items():
            if key not in SPLIT_METRICS and isinstance(value, bool | int | float | str):
                row[f"{split}_{key}"] = value
        matrix = values.get("confusion_matrix")
        if isinstance(matrix, list) and len(matrix) == 2:  # binary: for ROC AUC's standard error
            row[f"{split}_positives"] = int(sum(matrix[1]))
        if isinstance(matrix, list) and matrix:  # a constant guess's accuracy; classes predicted
            counts = np.asarray(matrix, dtype=np.float64)
            total = counts.sum()
            row[f"{split}_majority_share"] = counts.sum(axis=1).max() / total if total else np.nan
            row[f"{split}_classes_predicted"] = int(np.count_nonzero(counts.sum(axis=0)))
            sizes = counts.sum(axis=1)[counts.sum(axis=1) > 0]  # what balanced accuracy averages
            row[f"{split}_balanced_n"] = len(sizes) ** 2 / float(np.sum(1.0 / sizes))
    environment = metrics.get("environment") or {}
    for key in ENV_FIELDS:
        row[f"env_{key}"] = _scalar(environment.get(key))
    if row["status"] is np.nan or row["status"] is None:
        finished = metrics.get("val") if metrics.get("pilot") else metrics.get("test")
        row["status"] = "ok" if finished else "unknown"
    row["path"] = str(Path(path).parent) if path is not None else np.nan
    first, last = (
        (np.nan, np.nan) if path is None else history_losses(Path(path).parent / "history.csv")
    )
    row["history_loss_first"], row["history_loss_last"] = first, last
    return row


def collect_runs(metrics_paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """The whole study as a DataFrame, one row per run's ``metrics.json``.

    Raises ``FileNotFoundError`` / ``ValueError`` naming a missing or
    unreadable file, and ``ValueError`` when a run's identity is incomplete.
    Rows are sorted by dataset, backbone, strategy, augmentation, seed.
    """
    rows = []
    for path in metrics_paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"metrics file not found: {path}")
        row = run_row(_metrics_object(path), path)
        missing = [c for c in ID_COLUMNS if row[c] is None or row[c] is np.nan]
        if missing:
            raise ValueError(
                f"{path}: cannot tell the run's {', '.join(missing)} "
                "(neither metrics.json['run'] nor metrics.json['spec'] names it)"
            )
        rows.append(row)
    columns = (
        ID_COLUMNS
        + SPEC_COLUMNS
        + ["num_classes"]
        + list(RUN_SCALARS)
        + [f"{s}_{k}" for s in SPLITS for k in SPLIT_METRICS]
        + list(HISTORY_LOSS_COLUMNS)
    )
    frame = pd.DataFrame(rows)
    extra = [c for c in frame.columns if c not in columns]
    frame = frame.reindex(columns=columns + extra)
    if frame.empty:
        return frame
    frame["seed"] = frame["seed"].astype(int)
    numeric = [f"{s}_{k}" for s in SPLITS for k in SPLIT_METRICS] + [
        "train_seconds",
        "inference_images_per_second",
        "epochs_run",
        "best_epoch",
        "params_total",
        "params_trainable",
        "num_classes",
        *HISTORY_LOSS_COLUMNS,
    ]
    for column in numeric:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame.sort_values(ID_COLUMNS, kind="stable").reset_index(drop=True)
