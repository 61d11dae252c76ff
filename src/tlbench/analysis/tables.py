"""Aggregation of a study's runs into tables (pandas + tabulate).

* :func:`collect_runs` reads every run's ``metrics.json`` into one DataFrame,
  one row per run (failed runs included, with their reason and NaN metrics).
* :func:`general_table` is the per-dataset summary table of the original
  lab report (seed 000): one row per (backbone, strategy, augmentation),
  ``mean ± sd`` over seeds, the best value per column marked.
* :func:`strategy_ranking` ranks strategies per (dataset, backbone) by mean
  test accuracy, and by mean test ROC AUC on binary datasets (seed 002).
* :func:`flag_suspicious` lists runs that look like a pipeline bug (large
  train-test gap, test accuracy near chance, or a training loss that ends far
  above where it started).
* :func:`environment_table` lists the distinct software/hardware environments.
* :func:`write_table` writes a table as ``.csv``, ``.md`` and ``.html``.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from tlbench.core.atomic import atomic_file
from tlbench.models.weights import random_label, random_seed

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
SPLIT_METRICS = ("n", "accuracy", "loss", "top5_accuracy", "roc_auc")
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
)
#: Training loss (history.csv, classifier phases) of the first and the last epoch.
HISTORY_COLUMNS = ("history_loss_first", "history_loss_last")
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
#: Columns of :func:`general_table` -> (study column, best is "max" or "min", decimals).
GENERAL_COLUMNS: dict[str, tuple[str, str, int]] = {
    "Test accuracy": ("test_accuracy", "max", 4),
    "Test loss": ("test_loss", "min", 4),
    "Train accuracy": ("train_accuracy", "max", 4),
    "Train loss": ("train_loss", "min", 4),
    "Time_train (s)": ("train_seconds", "min", 1),
}
#: Default thresholds of :func:`flag_suspicious`.
MAX_TRAIN_TEST_GAP = 0.3
CHANCE_FACTOR = 1.5
LOSS_EXPLOSION_FACTOR = 100.0
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
        try:
            metrics = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(metrics, dict):
            raise ValueError(f"{path} must hold a JSON object, got {type(metrics).__name__}")
        row = run_row(metrics, path)
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
        + list(HISTORY_COLUMNS)
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
        *HISTORY_COLUMNS,
    ]
    for column in numeric:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame.sort_values(ID_COLUMNS, kind="stable").reset_index(drop=True)


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    """Runs that finished (status ``ok``)."""
    return df[df["status"] == "ok"]


def is_pilot(df: pd.DataFrame) -> bool:
    """Whether the study's runs are pilot runs (``pilot: true``: the test split sealed).

    A study mixing pilot and evaluated runs is an error: its tables would set
    validation figures beside test figures.
    """
    if "pilot" not in df or df.empty:
        return False
    flags = df["pilot"].map(lambda v: v is True or str(v).lower() == "true")
    if flags.all():
        return True
    if flags.any():
        mixed = df.loc[flags, ID_COLUMNS].astype(str).agg("/".join, axis=1)
        raise ValueError(
            f"the study mixes {int(flags.sum())} pilot runs (test split sealed, e.g. "
            f"{mixed.iloc[0]}) with {int((~flags).sum())} runs evaluated on test; "
            "rerun them all with one setting of pilot"
        )
    return False


def reported_split(df: pd.DataFrame) -> str:
    """The split whose figures a study's tables and figures show: ``"val"`` for a
    pilot study (:func:`is_pilot`), else ``"test"``."""
    return "val" if is_pilot(df) else "test"


#: Display names of the reported splits.
SPLIT_LABELS = {"test": "test", "val": "validation"}


def _check_dataset(df: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Rows of ``dataset``; an unknown name is an error listing the study's datasets."""
    rows = df[df["dataset"] == dataset]
    if rows.empty:
        raise ValueError(
            f"no runs of dataset {dataset!r}; datasets in the study: "
            + ", ".join(sorted(map(str, df["dataset"].unique())))
        )
    return rows


# --------------------------------------------------------------------------- tables


def mean_sd(values: Iterable[float], decimals: int = 4) -> str:
    """``"mean ± sd"`` of the finite values (sample sd); just the mean when n = 1; ``""`` when none."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return ""
    mean = float(np.mean(finite))
    if len(finite) == 1:
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {float(np.std(finite, ddof=1)):.{decimals}f}"


def model_name(backbone: str, strategy: str, augmentation: str) -> str:
    """Display name of a configuration: ``backbone_strategy`` plus ``_augmentation`` unless none."""
    name = f"{backbone}_{strategy}"
    return name if augmentation in ("none", None) else f"{name}_{augmentation}"


def general_columns(split: str = "test") -> dict[str, tuple[str, str, int]]:
    """:data:`GENERAL_COLUMNS`, with validation in place of test for ``split="val"`` (pilot)."""
    if split == "test":
        return dict(GENERAL_COLUMNS)
    if split != "val":
        raise ValueError(f"unknown reported split {split!r}; valid: test, val")
    return {
        name.replace("Test", "Validation"): (source.replace("test_", "val_"), best, decimals)
        for name, (source, best, decimals) in GENERAL_COLUMNS.items()
    }


def general_table(df: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Summary table of one dataset (seed 000's "general table").

    One row per (backbone, strategy, augmentation), sorted by those (augmentation
    ``none`` first), with ``Model name``, ``BatchNorm`` (the runs' BatchNorm
    policy, ``frozen`` or ``train``; empty for ``direct``) and
    ``mean ± sd`` over the seeds of finished runs of test/train accuracy and
    loss and training time, plus ``Runs`` ("3" or "2 of 3 ok") and, when some
    runs used tuned hyperparameters (``spec.tuned``), ``Tuned`` (their values;
    all other settings were set by the config). The positions
    of the best value per column (max accuracy, min loss/time, ties all
    marked) are in ``table.attrs["best"]`` ({column: [row positions]}), which
    :func:`write_table` renders bold in Markdown and HTML. In a pilot study the
    test columns are validation columns (``Validation accuracy``, ...).
    """
    rows_of = _check_dataset(df, dataset)
    columns_of = general_columns(reported_split(df))
    keys = ["backbone", "strategy", "augmentation", *budget_keys(rows_of)]
    records = []
    means: dict[str, list[float]] = {col: [] for col in columns_of}
    groups = sorted(
        rows_of.groupby(keys, sort=True),
        key=lambda item: (item[0][0], item[0][1], item[0][2] != "none", *item[0][2:]),
    )  # within a backbone and strategy, the run without augmentation first
    for (backbone, strategy, augmentation, *budget), group in groups:
        ok = _ok(group)
        record = {"Model name": model_name(backbone, strategy, augmentation)}
        if budget:  # label budgets (tlbench.budget): one row per cell and budget
            record["Model name"] += f" [budget {budget[0]}]"
        policies = group["batchnorm"].dropna() if "batchnorm" in group else []
        record["BatchNorm"] = "/".join(sorted({str(v) for v in policies}))
        for column, (source, _, decimals) in columns_of.items():
            values = ok[source].dropna()
            record[column] = mean_sd(values, decimals) if len(values) else "failed"
            means[column].append(float(values.mean()) if len(values) else np.nan)
        total = len(group)
        record["Runs"] = str(total) if len(ok) == total else f"{len(ok)} of {total} ok"
        if "tuned" in group:  # hyperparameters chosen by tuning (all others were set)
            labels = sorted({str(v) for v in group["tuned"].dropna() if str(v)})
            record["Tuned"] = "; ".join(labels)
        records.append(record)
    extra = ["Tuned"] if any(r.get("Tuned") for r in records) else []
    table = pd.DataFrame(records, columns=["Model name", "BatchNorm", *columns_of, "Runs", *extra])
    best: dict[str, list[int]] = {}
    for column, (_, direction, _) in columns_of.items():
        values = np.array(means[column], dtype=float)
        if np.isfinite(values).any():
            target = np.nanmax(values) if direction == "max" else np.nanmin(values)
            best[column] = [int(i) for i in np.flatnonzero(values == target)]
    table.attrs["best"] = best
    return table


def budget_keys(df: pd.DataFrame) -> list[str]:
    """``["budget"]`` when the study's runs have two or more label budgets
    (tlbench.budget; each budget's runs form their own cells), else ``[]``."""
    return ["budget"] if "budget" in df and df["budget"].nunique() > 1 else []


def strategy_ranking(df: pd.DataFrame) -> pd.DataFrame:
    """Strategies ranked per (dataset, backbone) by mean test accuracy (seed 002's criterion).

    One row per (dataset, backbone, strategy, augmentation) of finished runs:
    ``runs``, ``test_accuracy_mean``, ``test_accuracy_sd``, ``accuracy_rank``
    (1 = best, ties share the lower rank) and ``test_roc_auc_mean``; on binary
    datasets also ``roc_auc_rank`` (NaN elsewhere, where accuracy decides). In a
    pilot study (test split sealed) the columns are ``val_*`` and rank validation.
    """
    ok = _ok(df)
    split = reported_split(df)
    keys = ["dataset", "backbone", "strategy", "augmentation", *budget_keys(df)]
    columns = [
        *keys,
        "runs",
        f"{split}_accuracy_mean",
        f"{split}_accuracy_sd",
        "accuracy_rank",
        f"{split}_roc_auc_mean",
        "roc_auc_rank",
    ]
    if ok.empty:
        return pd.DataFrame(columns=columns)
    grouped = ok.groupby(keys, sort=True)
    table = grouped.agg(
        runs=("seed", "size"),
        accuracy_mean=(f"{split}_accuracy", "mean"),
        accuracy_sd=(f"{split}_accuracy", "std"),
        roc_auc_mean=(f"{split}_roc_auc", "mean"),
        num_classes=("num_classes", "max"),
    ).reset_index()
    table = table.rename(columns={c: f"{split}_{c}" for c in ("accuracy_mean", "accuracy_sd",
                                                              "roc_auc_mean")})  # fmt: skip
    within = table.groupby(["dataset", "backbone", *budget_keys(df)])
    table["accuracy_rank"] = within[f"{split}_accuracy_mean"].rank(ascending=False, method="min")
    auc_rank = within[f"{split}_roc_auc_mean"].rank(ascending=False, method="min")
    table["roc_auc_rank"] = auc_rank.where(table["num_classes"] == 2)
    table = table.sort_values(["dataset", "backbone", "accuracy_rank", "strategy", "augmentation"])
    return table[columns].reset_index(drop=True)


def flag_suspicious(
    df: pd.DataFrame,
    *,
    max_gap: float = MAX_TRAIN_TEST_GAP,
    chance_factor: float = CHANCE_FACTOR,
    loss_factor: float = LOSS_EXPLOSION_FACTOR,
) -> pd.DataFrame:
    """Finished runs that look like a pipeline bug, with the reason.

    A run is flagged when train accuracy exceeds test accuracy by more than
    ``max_gap`` (memorised training data, or train/test preprocessed
    differently), when its test accuracy is at most ``chance_factor`` times
    chance (1 / number of classes): the signature of seed 000's bug, where
    models with 0.98 train accuracy scored 0.03 on the test split, or when its
    training loss of the last epoch is at least ``loss_factor`` times that of
    the first (``history_loss_*``: the loss exploded, though it stayed finite;
    a non-finite loss already fails the run). In a pilot
    study (test split sealed) validation accuracy stands in for test accuracy;
    the column keeps its name ``test_accuracy`` and holds the validation figure.
    """
    split = reported_split(df)
    label = SPLIT_LABELS[split]
    flagged = []
    for _, row in _ok(df).iterrows():
        reasons = []
        test, train, classes = row[f"{split}_accuracy"], row["train_accuracy"], row["num_classes"]
        if pd.notna(test) and pd.notna(train) and train - test > max_gap:
            reasons.append(
                f"train accuracy {train:.4f} exceeds {label} accuracy {test:.4f} "
                f"by {train - test:.4f} > {max_gap}"
            )
        if pd.notna(test) and pd.notna(classes) and classes > 0:
            chance = 1.0 / classes
            if test <= chance_factor * chance:
                reasons.append(
                    f"{label} accuracy {test:.4f} is within {chance_factor}x chance "
                    f"(1/{int(classes)} = {chance:.4f})"
                )
        first, last = row.get("history_loss_first"), row.get("history_loss_last")
        if pd.notna(first) and pd.notna(last) and first > 0 and last >= loss_factor * first:
            reasons.append(
                f"training loss exploded: {last:.4g} in the last epoch, "
                f"{last / first:.0f}x the first epoch's {first:.4g} (>= {loss_factor:g}x)"
            )
        if reasons:
            flagged.append(
                {
                    **{c: row[c] for c in ID_COLUMNS},
                    "test_accuracy": test,
                    "train_accuracy": train,
                    "num_classes": classes,
                    "reason": "; ".join(reasons),
                    "path": row.get("path", np.nan),
                }
            )
    columns = [*ID_COLUMNS, "test_accuracy", "train_accuracy", "num_classes", "reason", "path"]
    return pd.DataFrame(flagged, columns=columns)


def environment_table(df: pd.DataFrame) -> pd.DataFrame:
    """Distinct environments (``env_*`` columns) of the study's runs, with their run counts."""
    columns = [
        f"env_{k}" for k in ENV_FIELDS if f"env_{k}" in df.columns and df[f"env_{k}"].notna().any()
    ]
    if df.empty or not columns:
        return pd.DataFrame(columns=[c.removeprefix("env_") for c in columns] + ["runs"])
    keyed = df[columns].apply(lambda col: col.map(lambda v: "" if pd.isna(v) else str(v)))
    table = keyed.value_counts(sort=False, dropna=False).rename("runs").reset_index()
    return table.rename(columns={c: c.removeprefix("env_") for c in columns})


def best_run(df: pd.DataFrame, dataset: str) -> pd.Series:
    """The finished run of ``dataset`` chosen by validation (:func:`tlbench.selection.select_run`:
    validation accuracy, validation ROC AUC on binary datasets; ties: lower validation loss).
    Its test figures are reported, never used to choose."""
    from tlbench.analysis.selection import select_run

    _check_dataset(df, dataset)
    return select_run(df, dataset).row


# --------------------------------------------------------------------------- writing


def _cell(value: Any) -> Any:
    """A table cell: NaN/None -> None (tabulate's missing value), numpy scalars -> Python."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _display(value: Any, floatfmt: str, integral: bool = False) -> str:
    """Text of one cell for Markdown/HTML; ``integral`` columns print floats as integers."""
    value = _cell(value)
    if value is None:
        return ""
    if isinstance(value, float):
        if integral:
            return str(int(value))
        if value != 0 and abs(value) < 1e-3:
            return format(value, ".3g")
        return format(value, floatfmt)
    return str(value)


#: Count-like columns printed as integers (pandas stores them as float when NaN is present).
INTEGRAL_COLUMNS = {
    "seed", "batch_size", "epochs", "input_size", "num_classes", "epochs_run", "best_epoch",
    "params_total", "params_trainable", "test_n", "val_n", "train_n", "runs",
    "accuracy_rank", "roc_auc_rank", "cpu_count",
}  # fmt: skip


def render(df: pd.DataFrame, fmt: str, floatfmt: str = ".4f") -> str:
    """``df`` as Markdown (``fmt="md"``, tabulate pipe) or HTML (``fmt="html"``).

    Cells listed in ``df.attrs["best"]`` are bold (``**x**`` / ``<b>x</b>``).
    """
    if fmt not in ("md", "html"):
        raise ValueError(f"unknown table format {fmt!r}; valid formats: html, md")
    best = df.attrs.get("best", {})
    integral = {c for c in df.columns if c in INTEGRAL_COLUMNS}
    rows = []
    for position, (_, row) in enumerate(df.iterrows()):
        cells = []
        for column in df.columns:
            text = _display(row[column], floatfmt, column in integral)
            if fmt == "md":
                text = text.replace("|", "\\|")
            else:
                text = html.escape(text)
            if text and position in best.get(column, ()):
                text = f"**{text}**" if fmt == "md" else f"<b>{text}</b>"
            cells.append(text)
        rows.append(cells)
    headers = [str(c) for c in df.columns]
    align = [
        "right" if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
        else "left"
        for c in df.columns
    ]  # fmt: skip
    if fmt == "md":
        table = tabulate(
            rows, headers=headers, tablefmt="pipe", disable_numparse=True, colalign=align
        )
    else:
        headers = [html.escape(h) for h in headers]
        table = tabulate(rows, headers=headers, tablefmt="unsafehtml", disable_numparse=True)
    return table + "\n"


def write_table(df: pd.DataFrame, path_stem: str | os.PathLike) -> list[Path]:
    """Write ``df`` as ``<stem>.csv``, ``<stem>.md`` and ``<stem>.html`` (atomically).

    The CSV holds the plain values; Markdown and HTML mark the best cells
    (``df.attrs["best"]``) bold. Returns the three paths.
    """
    stem = Path(path_stem)
    paths = [stem.with_name(stem.name + suffix) for suffix in (".csv", ".md", ".html")]
    with atomic_file(paths[0]) as handle:
        df.to_csv(handle, index=False)
    with atomic_file(paths[1]) as handle:
        handle.write(render(df, "md"))
    with atomic_file(paths[2]) as handle:
        handle.write(render(df, "html"))
    return paths
