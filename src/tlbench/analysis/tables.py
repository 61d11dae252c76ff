"""Aggregation of a study's runs into tables (pandas).

The study table is :func:`tlbench.analysis.runs.collect_runs`: one row per run.

* :func:`general_table` is the per-dataset summary table of the original
  lab report (seed 000): one row per (backbone, strategy, augmentation),
  ``mean ± sd`` over seeds, the best value per column marked.
* :func:`strategy_ranking` ranks strategies per (dataset, backbone) by mean
  test accuracy, and by mean test ROC AUC on binary datasets (seed 002).
* :func:`flag_suspicious` lists runs that look like a pipeline bug (large
  train-test gap, test accuracy near chance, or a training loss that ends far
  above where it started).
* :func:`environment_table` lists the distinct software/hardware environments.
* :func:`ok_runs`, :func:`wall_time`, :func:`epochs_to_reach`: the finished runs, a
  study's wall time, the epochs a run needs to reach a baseline's best.

Tables are rendered and written by :mod:`tlbench.report.render`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from tlbench.analysis.criteria import WORDS
from tlbench.analysis.runs import ENV_FIELDS, ID_COLUMNS, read_history
from tlbench.analysis.selection import select_run

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


def dataset_rows(df: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Rows of ``dataset``; an unknown name is an error listing the study's datasets."""
    rows = df[df["dataset"] == dataset]
    if rows.empty:
        raise ValueError(
            f"no runs of dataset {dataset!r}; datasets in the study: "
            + ", ".join(sorted(map(str, df["dataset"].unique())))
        )
    return rows


# --------------------------------------------------------------------------- tables


def imbalanced_columns(runs: pd.DataFrame, split: str) -> dict[str, str]:
    """``{column: words}`` of the balanced accuracy and macro-F1 of ``split`` that the runs
    recorded (runs from before these metrics did not)."""
    return {
        f"{split}_{metric}": WORDS[metric]
        for metric in ("balanced_accuracy", "macro_f1")
        if f"{split}_{metric}" in runs and runs[f"{split}_{metric}"].notna().any()
    }


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
    rows_of = dataset_rows(df, dataset)
    columns_of = general_columns(reported_split(df))
    keys = ["backbone", "strategy", "augmentation", *budget_keys(rows_of)]
    records = []
    means: dict[str, list[float]] = {col: [] for col in columns_of}
    groups = sorted(
        rows_of.groupby(keys, sort=True),
        key=lambda item: (item[0][0], item[0][1], item[0][2] != "none", *item[0][2:]),
    )  # within a backbone and strategy, the run without augmentation first
    for (backbone, strategy, augmentation, *budget), group in groups:
        ok = ok_runs(group)
        record = {"Model name": model_name(backbone, strategy, augmentation)}
        if budget:  # label budgets (tlbench.datasets.budget): one row per cell and budget
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
    (tlbench.datasets.budget; each budget's runs form their own cells), else ``[]``."""
    return ["budget"] if "budget" in df and df["budget"].nunique() > 1 else []


def strategy_ranking(df: pd.DataFrame) -> pd.DataFrame:
    """Strategies ranked per (dataset, backbone) by mean test accuracy (seed 002's criterion).

    One row per (dataset, backbone, strategy, augmentation) of finished runs:
    ``runs``, ``test_accuracy_mean``, ``test_accuracy_sd``, ``accuracy_rank``
    (1 = best, ties share the lower rank) and ``test_roc_auc_mean``; on binary
    datasets also ``roc_auc_rank`` (NaN elsewhere, where accuracy decides). In a
    pilot study (test split sealed) the columns are ``val_*`` and rank validation.
    """
    ok = ok_runs(df)
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


def loss_exploded(first: Any, last: Any, factor: float = LOSS_EXPLOSION_FACTOR) -> bool:
    """Whether a run's training loss ended at least ``factor`` times where it started
    (``history_loss_first`` / ``_last``; False when either is missing)."""
    if first is None or last is None or pd.isna(first) or pd.isna(last):
        return False
    return bool(first > 0 and last >= factor * first)


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
    for _, row in ok_runs(df).iterrows():
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
        if loss_exploded(first, last, loss_factor):
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
    """The finished run of ``dataset`` chosen by validation (:func:`tlbench.analysis.selection.select_run`:
    validation accuracy, validation ROC AUC on binary datasets; ties: lower validation loss).
    Its test figures are reported, never used to choose."""

    dataset_rows(df, dataset)
    return select_run(df, dataset).row


def epochs_to_reach(
    df: pd.DataFrame,
    method: str,
    baseline: str = "scratch",
    history: Callable[[str], pd.DataFrame] = read_history,
) -> pd.DataFrame:
    """Epochs each ``method`` run needs to reach its seed's ``baseline`` best val accuracy.

    Runs pair up by (dataset, backbone, augmentation, seed). Only classifier
    epochs count; pretraining epochs (phases ``ae_stage*``) are given apart.
    """
    runs = ok_runs(df)
    rows = []
    base_runs = runs[runs["strategy_name"] == baseline]
    for _, run in runs[runs["strategy_name"] == method].iterrows():
        match = base_runs[
            (base_runs["dataset"] == run["dataset"])
            & (base_runs["backbone"] == run["backbone"])
            & (base_runs["augmentation"] == run["augmentation"])
            & (base_runs["seed"] == run["seed"])
        ]
        if match.empty:
            continue
        base = history(match.iloc[0]["path"])
        target = float(base["val_accuracy"].max())
        base_epochs = int(np.argmax(base["val_accuracy"].to_numpy() >= target)) + 1
        hist = history(run["path"])
        pretraining = hist["phase"].astype(str).str.startswith("ae_stage")
        classifier = hist[~pretraining]["val_accuracy"].to_numpy()
        reached = np.nonzero(classifier >= target)[0]
        rows.append(
            {
                "strategy": run["strategy"],
                "baseline": match.iloc[0]["strategy"],
                "seed": run["seed"],
                "baseline best val accuracy": target,
                "baseline epochs to its best": base_epochs,
                "epochs to reach it": int(reached[0]) + 1 if len(reached) else None,
                "classifier epochs run": len(classifier),
                "pretraining epochs": int(pretraining.sum()),
                "test accuracy": run["test_accuracy"],
                "baseline test accuracy": match.iloc[0]["test_accuracy"],
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- measurements


def ok_runs(df: pd.DataFrame) -> pd.DataFrame:
    """Finished runs only (failed runs are listed separately on the page)."""
    return df[df["status"] == "ok"]


def wall_time(df: pd.DataFrame) -> dict[str, Any]:
    """The study's wall time: first run start to last run end (``metrics.json`` times)."""
    if "started_utc" not in df or df["started_utc"].isna().all():
        return {"seconds": None, "start": None, "end": None, "runs_seconds": None}
    start = min(datetime.fromisoformat(t) for t in df["started_utc"].dropna())
    end = max(datetime.fromisoformat(t) for t in df["finished_utc"].dropna())
    spans = [
        (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()
        for a, b in zip(df["started_utc"], df["finished_utc"], strict=True)
        if isinstance(a, str) and isinstance(b, str)
    ]
    return {
        "seconds": (end - start).total_seconds(),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "runs_seconds": float(sum(spans)),
    }
