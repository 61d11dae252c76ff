"""Figures of one run, or of a dataset's best run (matplotlib, PNG), one function per
figure; a study's per-dataset figures are in :mod:`tlbench.report.figures.study`.

Every public figure function writes one PNG atomically and returns its path.
Figures are built with :class:`matplotlib.figure.Figure` directly (Agg
canvas), never through ``pyplot``'s global figure registry, so nothing stays
open and no GUI backend is touched.

Workflow entry points (``scripts/*.py``):

* :func:`training_curves` (one run folder) -- loss and accuracy per epoch,
  train vs validation, phase boundaries of multi-phase runs marked.
* :func:`best_confusion_matrix` (study table, dataset) -- test confusion
  matrix of the dataset's best run.
* :func:`reconstructions` (autoencoder run folders) -- originals and the
  reconstruction after each autoencoder stage (``reconstructions.npz``).
* :func:`prediction_grid` (study table, prepared dataset, dataset) -- test
  images with the best run's top-3 class probabilities.

A "study table" is the DataFrame of :func:`tlbench.analysis.runs.collect_runs` or the
path of its CSV (``results/tables/study.csv``).
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tlbench.analysis import selection, tables
from tlbench.analysis.reconstructions import load_reconstructions
from tlbench.analysis.runs import read_history, read_metrics, run_label
from tlbench.core.atomic import atomic_dir
from tlbench.report.figures.base import message_figure, phase_boundaries, save_figure, short_name
from tlbench.report.figures.study import study_table, whole_budget

#: History columns plotted per run (``history.csv``, docs/ARCHITECTURE.md).


# --------------------------------------------------------------------------- curves


def training_curves(run_dir: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Loss and accuracy vs epoch (train and validation) of one run folder.

    Multi-phase runs get a dashed vertical line at each phase boundary. A
    failed run (``metrics.json`` status "failed") gets a figure stating its reason.
    """
    metrics = read_metrics(run_dir)
    label = run_label(metrics)
    history_path = Path(run_dir) / "history.csv"
    if metrics.get("status") == "failed" and not history_path.is_file():
        return message_figure(
            path, label, [f"run failed: {metrics.get('reason', 'no reason recorded')}"]
        )
    return curves_from_history(history_path, path, title=label)


def training_curves_folder(run_dirs: list[str | os.PathLike], outdir: str | os.PathLike) -> Path:
    """:func:`training_curves` of several runs of one dataset in one process:
    ``outdir/BACKBONE/STRATEGY/AUGMENTATION/seedN/curves.png`` per run folder
    (``.../runs/DATASET/BACKBONE/STRATEGY/AUGMENTATION/seedN``); ``outdir`` is
    written atomically (all figures, or the previous folder left as it was)."""

    tails = [Path(*Path(run).parts[-4:]) for run in run_dirs]
    for run, tail in zip(run_dirs, tails, strict=True):
        if len(Path(run).parts) < 5 or not tail.parts[-1].startswith("seed"):
            raise ValueError(
                f"{run}: not a run folder DATASET/BACKBONE/STRATEGY/AUGMENTATION/seedN"
            )
    datasets = sorted({Path(run).parts[-5] for run in run_dirs})
    if len(datasets) > 1:
        raise ValueError(f"run folders of more than one dataset ({', '.join(datasets)})")
    with atomic_dir(outdir, "figures", ("*/curves.png",)) as tmp:
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
    return save_figure(fig, path)


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
    labels = [short_name(c) for c in classes]
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
    return save_figure(fig, path)


def best_confusion_matrix(
    study: pd.DataFrame | str | os.PathLike, dataset: str, path: str | os.PathLike
) -> Path:
    """Test confusion matrix of the dataset's run chosen by validation
    (:func:`tlbench.analysis.selection.select_run`), from its metrics.json; the title names the
    validation figure that chose it, its test accuracy, and warns when validation
    cannot tell it from the runner-up. A pilot run's matrix is its validation one."""
    df, which = whole_budget(study_table(study), dataset)
    chosen = selection.select_run(df, dataset)
    best = chosen.row
    metrics = read_metrics(best["path"])
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
        metrics = read_metrics(run_dir)
        label = run_label(metrics)
        if metrics.get("status") == "failed":
            failed.append(f"{label}: failed ({metrics.get('reason', 'no reason recorded')})")
            continue
        images, stages = load_reconstructions(Path(run_dir) / "reconstructions.npz")
        count = min(max_images, len(images))
        blocks.append((label, "original", images[:count]))
        blocks.extend((label, name, array[:count]) for name, array in stages)
    if not blocks:
        return message_figure(path, "autoencoder reconstructions", failed)
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
    return save_figure(fig, path)


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
        ax.set_title(f"true: {short_name(classes[int(y_true[index])], 24)}", fontsize=8)
        lines = [f"{short_name(classes[k], 20)}: {probs[k]:.2f}" for k in top]
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
    return save_figure(fig, path)


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

    The best run is the one chosen by validation (:func:`tlbench.analysis.selection.select_run`);
    its ``predictions.npz`` (``y_true``, ``y_prob``) must match the prepared
    ``test_x.npy`` / ``test_y.npy`` and ``classes.json``. A pilot run's predictions
    are of the validation split: its images are ``val_x.npy`` (test stays sealed).
    """
    df, which = whole_budget(study_table(study), dataset)
    chosen = selection.select_run(df, dataset)
    best = chosen.row
    prepared = Path(prepared)
    predictions_path = Path(best["path"]) / "predictions.npz"
    if not predictions_path.is_file():
        raise FileNotFoundError(f"best run has no predictions: {predictions_path}")
    metrics = read_metrics(best["path"])
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
