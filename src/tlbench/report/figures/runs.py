"""Figures of the study (matplotlib, PNG), one function per figure.

Every public figure function writes one PNG atomically and returns its path.
Figures are built with :class:`matplotlib.figure.Figure` directly (Agg
canvas), never through ``pyplot``'s global figure registry, so nothing stays
open and no GUI backend is touched.

Workflow entry points (``scripts/*.py``):

* :func:`training_curves` (one run folder) -- loss and accuracy per epoch,
  train vs validation, phase boundaries of multi-phase runs marked.
* :func:`dataset_curves` (run folders of a dataset) -- validation accuracy and
  loss of all runs in one figure ("all in one", seed 001).
* :func:`accuracy_heatmaps` (study table, dataset) -- mean test accuracy over
  strategy x backbone, one panel per augmentation.
* :func:`pareto_front` (study table, dataset) -- test accuracy vs training
  time, the Pareto-optimal configurations highlighted.
* :func:`best_confusion_matrix` (study table, dataset) -- test confusion
  matrix of the dataset's best run.
* :func:`reconstructions` (autoencoder run folders) -- originals and the
  reconstruction after each autoencoder stage (``reconstructions.npz``).
* :func:`prediction_grid` (study table, prepared dataset, dataset) -- test
  images with the best run's top-3 class probabilities.

A "study table" is the DataFrame of :func:`tlbench.tables.collect_runs` or the
path of its CSV (``results/tables/study.csv``).
"""

from __future__ import annotations

import json
import os
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tlbench.analysis import selection, tables
from tlbench.core.atomic import atomic_file
from tlbench.datasets.budget import ALL as ALL_BUDGET

#: History columns plotted per run (``history.csv``, docs/ARCHITECTURE.md).
HISTORY_COLUMNS = ("epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy")
DPI = 100


# --------------------------------------------------------------------------- helpers


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically and return the path."""
    path = Path(path)
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=DPI, bbox_inches="tight")
    fig.clear()
    return path


def _study(study: pd.DataFrame | str | os.PathLike) -> pd.DataFrame:
    """The study table: a DataFrame as is, or read from a CSV path."""
    if isinstance(study, pd.DataFrame):
        return study
    path = Path(study)
    if not path.is_file():
        raise FileNotFoundError(f"study table not found: {path}")
    return pd.read_csv(path)


def _read_metrics(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A run folder's ``metrics.json`` (error naming the file when missing)."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"run folder {run_dir} has no metrics.json ({path})")
    return json.loads(path.read_text())


def run_label(metrics: dict[str, Any]) -> str:
    """``backbone/strategy/augmentation/seedN`` of a run (config-level names when known)."""
    row = tables.run_row(metrics)
    return f"{row['backbone']}/{row['strategy']}/{row['augmentation']}/seed{row['seed']}"


def read_history(path: str | os.PathLike) -> pd.DataFrame:
    """A run's ``history.csv`` with the columns the curves need (error naming missing ones)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"history file not found: {path}")
    history = pd.read_csv(path)
    missing = [c for c in HISTORY_COLUMNS if c not in history.columns]
    if missing:
        raise ValueError(
            f"{path} lacks column(s) {', '.join(missing)}; "
            f"expected {', '.join(HISTORY_COLUMNS)} (docs/ARCHITECTURE.md)"
        )
    return history


def phase_boundaries(phases: Sequence[Any]) -> list[tuple[float, Any]]:
    """``(x, next phase)`` where the phase changes; x sits between epochs (1-based x axis)."""
    return [
        (i + 0.5, phases[i]) for i in range(1, len(phases)) if str(phases[i]) != str(phases[i - 1])
    ]


def _message_figure(path: str | os.PathLike, title: str, lines: Sequence[str]) -> Path:
    """A figure that states in words why there is nothing to plot (e.g. a failed run)."""
    fig = Figure(figsize=(6, 2 + 0.3 * len(lines)))
    ax = fig.subplots()
    ax.axis("off")
    ax.set_title(title)
    text = "\n".join(textwrap.fill(line, 90) for line in lines)
    ax.text(0.0, 1.0, text, va="top", ha="left", family="monospace", fontsize=8)
    return _save(fig, path)


def _short(name: Any, width: int = 18) -> str:
    """A class name cut to ``width`` characters for tight labels."""
    name = str(name)
    return name if len(name) <= width else name[: width - 1] + "…"


def _ok_runs(df: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Finished runs of ``dataset`` with an accuracy on the reported split (test; val in
    a pilot study, :func:`tlbench.tables.reported_split`); error listing datasets if unknown."""
    rows = tables._check_dataset(df, dataset)
    column = f"{tables.reported_split(df)}_accuracy"
    return rows[(rows["status"] == "ok") & rows[column].notna()]


def whole_budget(df: pd.DataFrame, dataset: str) -> tuple[pd.DataFrame, str]:
    """The study's rows that the per-dataset figures of ``dataset`` show, and the words
    for their titles. With label budgets (tlbench.budget) the heatmaps, the Pareto
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


# --------------------------------------------------------------------------- curves


def training_curves(run_dir: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Loss and accuracy vs epoch (train and validation) of one run folder.

    Multi-phase runs get a dashed vertical line at each phase boundary. A
    failed run (``metrics.json`` status "failed") gets a figure stating its reason.
    """
    metrics = _read_metrics(run_dir)
    label = run_label(metrics)
    history_path = Path(run_dir) / "history.csv"
    if metrics.get("status") == "failed" and not history_path.is_file():
        return _message_figure(
            path, label, [f"run failed: {metrics.get('reason', 'no reason recorded')}"]
        )
    return curves_from_history(history_path, path, title=label)


def training_curves_folder(run_dirs: list[str | os.PathLike], outdir: str | os.PathLike) -> Path:
    """:func:`training_curves` of several runs of one dataset in one process:
    ``outdir/BACKBONE/STRATEGY/AUGMENTATION/seedN/curves.png`` per run folder
    (``.../runs/DATASET/BACKBONE/STRATEGY/AUGMENTATION/seedN``); ``outdir`` is
    written atomically (all figures, or the previous folder left as it was)."""
    from tlbench.core.atomic import atomic_dir

    tails = [Path(*Path(run).parts[-4:]) for run in run_dirs]
    for run, tail in zip(run_dirs, tails, strict=True):
        if len(Path(run).parts) < 5 or not tail.parts[-1].startswith("seed"):
            raise ValueError(
                f"{run}: not a run folder DATASET/BACKBONE/STRATEGY/AUGMENTATION/seedN"
            )
    datasets = sorted({Path(run).parts[-5] for run in run_dirs})
    if len(datasets) > 1:
        raise ValueError(f"run folders of more than one dataset ({', '.join(datasets)})")
    with atomic_dir(outdir) as tmp:
        for run, tail in zip(run_dirs, tails, strict=True):
            training_curves(run, tmp / tail / "curves.png")
    return Path(outdir)


def curves_from_history(
    history_path: str | os.PathLike, path: str | os.PathLike, title: str = ""
) -> Path:
    """The two-panel training-curve figure of one ``history.csv``."""
    history = read_history(history_path)
    x = np.arange(1, len(history) + 1)
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        ax.plot(x, history[metric], marker="o", markersize=3, label=f"train {metric}")
        ax.plot(x, history[f"val_{metric}"], marker="o", markersize=3, label=f"val {metric}")
        for boundary, phase in phase_boundaries(list(history["phase"])):
            ax.axvline(boundary, color="gray", linestyle="--", linewidth=1)
            ax.annotate(
                str(phase),
                (boundary, 1.0),
                xycoords=("data", "axes fraction"),
                rotation=90,
                va="top",
                ha="right",
                fontsize=8,
                color="gray",
            )
        ax.set_xlabel("epoch (all phases)")
        ax.set_xlim(0.5, len(history) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


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
        metrics = _read_metrics(run_dir)
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
    return _save(fig, path)


# --------------------------------------------------------------------------- study-level


def accuracy_heatmaps(
    study: pd.DataFrame | str | os.PathLike, dataset: str, path: str | os.PathLike
) -> Path:
    """Mean test accuracy over strategy (rows) x backbone (columns), one panel per augmentation
    (validation accuracy in a pilot study)."""
    df, which = whole_budget(_study(study), dataset)
    column, label = _reported(df)
    runs = _ok_runs(df, dataset)
    if runs.empty:
        return _message_figure(path, f"{dataset}: {label} accuracy", ["no finished run"])
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
    return _save(fig, path)


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
    df, which = whole_budget(_study(study), dataset)
    column, label = _reported(df)
    runs = _ok_runs(df, dataset).dropna(subset=["train_seconds"])
    if runs.empty:
        return _message_figure(path, f"{dataset}: accuracy vs training time", ["no finished run"])
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
    return _save(fig, path)


def confusion_figure(
    matrix: Sequence[Sequence[int]],
    classes: Sequence[str],
    path: str | os.PathLike,
    title: str = "",
) -> Path:
    """A confusion matrix (rows = true) coloured by row-normalised rate, counts written if small."""
    counts = np.asarray(matrix, dtype=float)
    n = len(classes)
    if counts.shape != (n, n):
        raise ValueError(
            f"confusion matrix has shape {counts.shape}, expected ({n}, {n}) for {n} classes"
        )
    totals = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    size = min(16.0, max(4.5, 0.32 * n + 2.5))
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.subplots()
    image = ax.imshow(rates, vmin=0.0, vmax=1.0, cmap="Blues")
    fontsize = 9 if n <= 10 else max(5, min(9, int(300 / n)))
    labels = [_short(c) for c in classes]
    ax.set_xticks(range(n), labels, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(n), labels, fontsize=fontsize)
    if n <= 20:
        for (i, j), count in np.ndenumerate(counts):
            if count:
                color = "white" if rates[i, j] > 0.5 else "black"
                ax.text(
                    j, i, str(int(count)), ha="center", va="center", fontsize=fontsize, color=color
                )
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(image, ax=ax, label="fraction of the true class", shrink=0.8)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def best_confusion_matrix(
    study: pd.DataFrame | str | os.PathLike, dataset: str, path: str | os.PathLike
) -> Path:
    """Test confusion matrix of the dataset's run chosen by validation
    (:func:`tlbench.selection.select_run`), from its metrics.json; the title names the
    validation figure that chose it, its test accuracy, and warns when validation
    cannot tell it from the runner-up. A pilot run's matrix is its validation one."""
    df, which = whole_budget(_study(study), dataset)
    chosen = selection.select_run(df, dataset)
    best = chosen.row
    metrics = _read_metrics(best["path"])
    matrix = metrics.get("confusion_matrix")
    classes = metrics.get("classes")
    if matrix is None or classes is None:
        raise ValueError(f"{best['path']}/metrics.json lacks confusion_matrix or classes")
    split = "validation" if metrics.get("pilot") else "test"
    title = (
        f"{dataset}: {run_label(metrics)} ({split} confusion matrix){which}\n{_chosen_line(chosen)}"
    )
    return confusion_figure(matrix, classes, path, title)


def _chosen_line(chosen: selection.Selection) -> str:
    """``chosen by validation accuracy 0.95 (n = 245); test accuracy 0.93`` (+ the warning)."""
    test = (
        "test split sealed (pilot)"
        if chosen.test_accuracy is None
        else f"test accuracy {chosen.test_accuracy:.4f}"
    )
    n = "?" if chosen.val_n is None else chosen.val_n
    line = f"chosen by {chosen.label} {chosen.value:.4f} (n = {n}); {test}"
    if chosen.warning:
        line += "\n" + textwrap.fill(chosen.warning, 110)
    return line


# --------------------------------------------------------------------------- images


def _as_image(array: np.ndarray) -> np.ndarray:
    """An image array in 0..255 (any dtype) as uint8 for ``imshow``."""
    return np.clip(np.asarray(array, dtype=float), 0, 255).round().astype(np.uint8)


def load_reconstructions(
    path: str | os.PathLike,
) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """``(images, [(stage name, reconstructions), ...])`` from a ``reconstructions.npz``.

    Stages are the keys ``stage1``, ``stage2``, ... in numeric order; each must
    have the shape of ``images`` (N x H x W x 3).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reconstructions file not found: {path}")
    with np.load(path) as data:
        keys = list(data.keys())
        if "images" not in keys:
            raise ValueError(f"{path} has no 'images' array; keys: {', '.join(keys)}")
        images = data["images"]
        stage_keys = sorted(
            (k for k in keys if re.fullmatch(r"stage\d+", k)), key=lambda k: int(k[5:])
        )
        unknown = [k for k in keys if k != "images" and k not in stage_keys]
        if unknown:
            raise ValueError(
                f"{path} has unexpected key(s) {', '.join(unknown)}; valid: images, stage1, stage2, ..."
            )
        if not stage_keys:
            raise ValueError(f"{path} has no stage1, stage2, ... arrays")
        stages = [(k, data[k]) for k in stage_keys]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{path}: 'images' must be N x H x W x 3, got shape {images.shape}")
    for key, array in stages:
        if array.shape != images.shape:
            raise ValueError(
                f"{path}: '{key}' has shape {array.shape}, expected {images.shape} like 'images'"
            )
    return images, stages


def reconstructions(
    run_dirs: Sequence[str | os.PathLike], path: str | os.PathLike, max_images: int = 8
) -> Path:
    """Originals and per-stage autoencoder reconstructions of each run (rows), images as columns.

    Failed runs are listed by name and reason beneath the figure.
    """
    if not run_dirs:
        raise ValueError("reconstructions needs at least one autoencoder run folder")
    blocks: list[tuple[str, str, np.ndarray]] = []
    failed = []
    for run_dir in run_dirs:
        metrics = _read_metrics(run_dir)
        label = run_label(metrics)
        if metrics.get("status") == "failed":
            failed.append(f"{label}: failed ({metrics.get('reason', 'no reason recorded')})")
            continue
        images, stages = load_reconstructions(Path(run_dir) / "reconstructions.npz")
        count = min(max_images, len(images))
        blocks.append((label, "original", images[:count]))
        blocks.extend((label, name, array[:count]) for name, array in stages)
    if not blocks:
        return _message_figure(path, "autoencoder reconstructions", failed)
    columns = max(len(b[2]) for b in blocks)
    fig = Figure(figsize=(1.3 * columns + 1.5, 1.35 * len(blocks) + 0.5))
    axes = np.atleast_2d(fig.subplots(len(blocks), columns, squeeze=False))
    for row, (label, name, array) in enumerate(blocks):
        for col in range(columns):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col < len(array):
                ax.imshow(_as_image(array[col]))
            else:
                ax.axis("off")
        axes[row, 0].set_ylabel(f"{label}\n{name}" if name == "original" else name, fontsize=7)
    if failed:
        fig.text(0.01, 0.0, "; ".join(failed), fontsize=7, va="top")
    fig.suptitle("autoencoder: originals and reconstructions after each stage")
    return _save(fig, path)


def prediction_figure(
    images: np.ndarray,
    y_true: np.ndarray,
    y_prob: np.ndarray,
    classes: Sequence[str],
    path: str | os.PathLike,
    *,
    n: int = 16,
    seed: int = 0,
    title: str = "",
) -> Path:
    """A grid of ``n`` test images (a seeded sample) with the top-3 predicted classes.

    Each image is titled with its true class; the three most probable classes
    and their probabilities are listed beneath, green when the top-1 is right,
    red otherwise.
    """
    y_true = np.asarray(y_true)
    y_prob = np.asarray(y_prob, dtype=float)
    if len(images) != len(y_true) or len(y_true) != len(y_prob):
        raise ValueError(
            f"test images ({len(images)}), y_true ({len(y_true)}) and y_prob ({len(y_prob)}) "
            "must have the same length"
        )
    if y_prob.ndim != 2 or y_prob.shape[1] != len(classes):
        raise ValueError(
            f"y_prob has shape {y_prob.shape}; expected N x {len(classes)} (one column per class)"
        )
    if len(y_true) == 0:
        raise ValueError("no test images to show")
    count = min(n, len(y_true))
    rng = np.random.default_rng(seed)
    indices = np.sort(rng.choice(len(y_true), size=count, replace=False))
    columns = min(4, count)
    rows = int(np.ceil(count / columns))
    fig = Figure(figsize=(3.0 * columns, 3.4 * rows))
    axes = np.atleast_2d(fig.subplots(rows, columns, squeeze=False))
    for ax in axes.flat:
        ax.axis("off")
    for ax, index in zip(axes.flat, indices, strict=False):
        probs = y_prob[index]
        top = np.argsort(-probs)[:3]
        ax.imshow(_as_image(images[index]))
        correct = top[0] == y_true[index]
        ax.set_title(f"true: {_short(classes[int(y_true[index])], 24)}", fontsize=8)
        lines = [f"{_short(classes[k], 20)}: {probs[k]:.2f}" for k in top]
        ax.text(
            0.5,
            -0.04,
            "\n".join(lines),
            transform=ax.transAxes,
            ha="center",
            va="top",
            fontsize=7,
            color="green" if correct else "red",
        )
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(hspace=0.6)
    return _save(fig, path)


def prediction_grid(
    study: pd.DataFrame | str | os.PathLike,
    prepared: str | os.PathLike,
    dataset: str,
    path: str | os.PathLike,
    *,
    n: int = 16,
    seed: int = 0,
) -> Path:
    """Test images of a prepared dataset with the best run's top-3 probabilities.

    The best run is the one chosen by validation (:func:`tlbench.selection.select_run`);
    its ``predictions.npz`` (``y_true``, ``y_prob``) must match the prepared
    ``test_x.npy`` / ``test_y.npy`` and ``classes.json``. A pilot run's predictions
    are of the validation split: its images are ``val_x.npy`` (test stays sealed).
    """
    df, which = whole_budget(_study(study), dataset)
    chosen = selection.select_run(df, dataset)
    best = chosen.row
    prepared = Path(prepared)
    predictions_path = Path(best["path"]) / "predictions.npz"
    if not predictions_path.is_file():
        raise FileNotFoundError(f"best run has no predictions: {predictions_path}")
    metrics = _read_metrics(best["path"])
    split = "val" if metrics.get("pilot") else "test"
    for name in (f"{split}_x.npy", f"{split}_y.npy", "classes.json"):
        if not (prepared / name).is_file():
            raise FileNotFoundError(f"prepared dataset {prepared} lacks {name}")
    images = np.load(prepared / f"{split}_x.npy", mmap_mode="r")
    labels = np.load(prepared / f"{split}_y.npy")
    classes = json.loads((prepared / "classes.json").read_text())
    with np.load(predictions_path) as data:
        y_true, y_prob = data["y_true"], data["y_prob"]
        saved = str(data["split"]) if "split" in data.files else "test"
    if saved != split or len(y_true) != len(labels) or not np.array_equal(y_true, labels):
        raise ValueError(
            f"{predictions_path} ({saved} split) does not match {prepared}/{split}_y.npy: "
            f"the run was evaluated on another {split} split"
        )
    title = f"{dataset}: {run_label(metrics)} ({tables.SPLIT_LABELS[split]} images){which}\n" + (
        _chosen_line(chosen)
    )
    return prediction_figure(images, y_true, y_prob, classes, path, n=n, seed=seed, title=title)
