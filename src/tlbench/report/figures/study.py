"""Figures of a study's runs per dataset: learning curves of every run, accuracy heatmaps,
the Pareto front of accuracy against cost.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tlbench.analysis import tables
from tlbench.analysis.runs import read_history, read_metrics, run_label
from tlbench.datasets.budget import ALL as ALL_BUDGET
from tlbench.report.figures.base import message_figure, save_figure


def study_table(study: pd.DataFrame | str | os.PathLike) -> pd.DataFrame:
    """The study table: a DataFrame as is, or read from a CSV path."""
    if isinstance(study, pd.DataFrame):
        return study
    path = Path(study)
    if not path.is_file():
        raise FileNotFoundError(f"study table not found: {path}")
    return pd.read_csv(path)


def _ok_runs(df: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Finished runs of ``dataset`` with an accuracy on the reported split (test; val in
    a pilot study, :func:`tlbench.analysis.tables.reported_split`); error listing datasets if unknown."""
    rows = tables.dataset_rows(df, dataset)
    column = f"{tables.reported_split(df)}_accuracy"
    return rows[(rows["status"] == "ok") & rows[column].notna()]


def whole_budget(df: pd.DataFrame, dataset: str) -> tuple[pd.DataFrame, str]:
    """The study's rows that the per-dataset figures of ``dataset`` show, and the words
    for their titles. With label budgets (tlbench.datasets.budget) the heatmaps, the Pareto
    front, the confusion matrix and the prediction grid show the runs of one budget,
    never a mix: ``all`` (the whole training split), else the largest; the learning
    curves show every budget. Without budgets: ``df`` and ``""``."""
    if "budget" not in df:
        return df, ""
    rows = df[df["dataset"] == dataset]
    labels = rows["budget"].fillna(ALL_BUDGET).astype(str)
    if labels.nunique() < 2:
        return df, ""
    if (labels == ALL_BUDGET).any():
        keep = ALL_BUDGET
    else:  # the largest budget: most training images per class
        keep = str(rows.groupby(labels)["budget_per_class_mean"].mean().idxmax())
    others = df["dataset"] != dataset
    budgets = df["budget"].fillna(ALL_BUDGET).astype(str)
    words = f" (label budget {keep!r}; every budget: learning curves)"
    return df[others | (budgets == keep)], words


def _reported(df: pd.DataFrame) -> tuple[str, str]:
    """``(column, label)`` of the accuracy a study's figures show: test, or validation
    in a pilot study (the test split sealed)."""
    split = tables.reported_split(df)
    return f"{split}_accuracy", tables.SPLIT_LABELS[split]


def dataset_curves(run_dirs: Sequence[str | os.PathLike], path: str | os.PathLike) -> Path:
    """Validation accuracy and validation loss per epoch of all given runs in one figure.

    Only classification epochs are drawn (rows with a validation accuracy;
    autoencoder stages are left out), numbered from 1 per run. Runs without a
    ``history.csv`` (failed before training) are named in a footnote instead.
    """
    if not run_dirs:
        raise ValueError("dataset_curves needs at least one run folder")
    fig = Figure(figsize=(13, 5))
    axes = fig.subplots(1, 2)
    skipped = []
    drawn = 0
    longest = 1
    for run_dir in run_dirs:
        metrics = read_metrics(run_dir)
        label = run_label(metrics)
        history_path = Path(run_dir) / "history.csv"
        if not history_path.is_file():
            skipped.append(f"{label} ({metrics.get('status', '?')}: {metrics.get('reason', '')})")
            continue
        # Classification epochs only: phases without accuracy (autoencoder stages,
        # trained on a reconstruction loss) are not comparable with the others.
        history = read_history(history_path).dropna(subset=["val_accuracy"])
        x = np.arange(1, len(history) + 1)
        longest = max(longest, len(history))
        for ax, metric in zip(axes, ("val_accuracy", "val_loss"), strict=True):
            ax.plot(x, history[metric], linewidth=1.2, marker="o", markersize=2.5,
                    label=label, color=f"C{drawn % 10}")  # fmt: skip
        drawn += 1
    for ax, metric in zip(axes, ("validation accuracy", "validation loss"), strict=True):
        ax.set_xlabel("classification epoch (all phases)")
        ax.set_xlim(0.5, longest + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    if drawn:
        axes[1].legend(
            fontsize=7 if drawn <= 20 else 5,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            ncol=1 if drawn <= 25 else 2,
        )
    if skipped:
        fig.text(0.01, -0.02, "not drawn (no history): " + "; ".join(skipped), fontsize=7)
    return save_figure(fig, path)


# --------------------------------------------------------------------------- study-level


def accuracy_heatmaps(
    study: pd.DataFrame | str | os.PathLike, dataset: str, path: str | os.PathLike
) -> Path:
    """Mean test accuracy over strategy (rows) x backbone (columns), one panel per augmentation
    (validation accuracy in a pilot study)."""
    df, which = whole_budget(study_table(study), dataset)
    column, label = _reported(df)
    runs = _ok_runs(df, dataset)
    if runs.empty:
        return message_figure(path, f"{dataset}: {label} accuracy", ["no finished run"])
    augmentations = sorted(runs["augmentation"].astype(str).unique())
    strategies = sorted(runs["strategy"].astype(str).unique())
    backbones = sorted(runs["backbone"].astype(str).unique())
    width = max(4.0, 1.1 * len(backbones) + 2.5)
    height = max(3.0, 0.5 * len(strategies) + 1.5)
    fig = Figure(figsize=(width * len(augmentations), height + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(augmentations)))
    image = None
    for ax, augmentation in zip(axes, augmentations, strict=True):
        part = runs[runs["augmentation"].astype(str) == augmentation]
        grid = (
            part.groupby(["strategy", "backbone"])[column]
            .mean()
            .unstack()
            .reindex(index=strategies, columns=backbones)
        )
        values = grid.to_numpy(dtype=float)
        image = ax.imshow(np.ma.masked_invalid(values), vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_xticks(range(len(backbones)), backbones, rotation=30, ha="right")
        ax.set_yticks(range(len(strategies)), strategies)
        for (i, j), value in np.ndenumerate(values):
            text = "–" if np.isnan(value) else f"{value:.3f}"
            color = "black" if np.isnan(value) or value > 0.6 else "white"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=color)
        ax.set_title(f"augmentation: {augmentation}")
    fig.colorbar(image, ax=list(axes), label=f"mean {label} accuracy", shrink=0.8)
    sealed = " (pilot: test split sealed)" if label != "test" else ""
    fig.suptitle(f"{dataset}: mean {label} accuracy over seeds{sealed}{which}")
    return save_figure(fig, path)


def pareto_mask(cost: Sequence[float], value: Sequence[float]) -> np.ndarray:
    """Boolean mask of Pareto-optimal points: no other point is cheaper-or-equal AND better-or-equal
    with one of the two strictly (minimise ``cost``, maximise ``value``)."""
    cost = np.asarray(cost, dtype=float)
    value = np.asarray(value, dtype=float)
    mask = np.ones(len(cost), dtype=bool)
    for i in range(len(cost)):
        dominated = (
            (cost <= cost[i]) & (value >= value[i]) & ((cost < cost[i]) | (value > value[i]))
        )
        mask[i] = not dominated.any()
    return mask


def pareto_front(
    study: pd.DataFrame | str | os.PathLike, dataset: str, path: str | os.PathLike
) -> Path:
    """Test accuracy vs training time per configuration (mean over seeds), Pareto front highlighted.

    Single runs are drawn as faint dots; configuration means as circles; the
    Pareto-optimal configurations (no other is both faster and more accurate)
    are joined by a step line and labelled.
    """
    df, which = whole_budget(study_table(study), dataset)
    column, label = _reported(df)
    runs = _ok_runs(df, dataset).dropna(subset=["train_seconds"])
    if runs.empty:
        return message_figure(path, f"{dataset}: accuracy vs training time", ["no finished run"])
    keys = ["backbone", "strategy", "augmentation"]
    configs = runs.groupby(keys).agg(seconds=("train_seconds", "mean"), accuracy=(column, "mean"))
    configs = configs.reset_index()
    mask = pareto_mask(configs["seconds"], configs["accuracy"])
    fig = Figure(figsize=(9, 6))
    ax = fig.subplots()
    ax.scatter(runs["train_seconds"], runs[column], s=10, color="gray", alpha=0.4,
               label="single runs")  # fmt: skip
    ax.scatter(configs["seconds"][~mask], configs["accuracy"][~mask], s=40, color="C0",
               label="configuration (mean over seeds)")  # fmt: skip
    front = configs[mask].sort_values("seconds")
    ax.step(front["seconds"], front["accuracy"], where="post", color="C3", linewidth=1.5)
    ax.scatter(front["seconds"], front["accuracy"], s=70, color="C3", zorder=3,
               label="Pareto front")  # fmt: skip
    for _, row in front.iterrows():
        ax.annotate(
            tables.model_name(row["backbone"], row["strategy"], row["augmentation"]),
            (row["seconds"], row["accuracy"]),
            textcoords="offset points",
            xytext=(5, 5),
            fontsize=7,
        )
    positive = runs["train_seconds"][runs["train_seconds"] > 0]
    if len(positive) and positive.max() / positive.min() > 20:
        ax.set_xscale("log")
    ax.set_xlabel("training time (s)")
    ax.set_ylabel(f"{label} accuracy")
    sealed = " (pilot: test split sealed)" if label != "test" else ""
    ax.set_title(f"{dataset}: {label} accuracy vs training time{sealed}{which}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
