"""A dataset's learning-curve page: the curves' table, the figure and the crossovers in
words (from the paired bootstrap of each budget), written together
(:func:`write_learning_curves`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pandas as pd

from tlbench.analysis import tables
from tlbench.analysis.learning_curves import budget_comparisons, crossovers, curve_table
from tlbench.analysis.verdict.bootstrap import MARGIN, REPS, SEED
from tlbench.core.atomic import atomic_file
from tlbench.report import render
from tlbench.report.figures.learning_curves import plot


def crossover_lines(comparisons: pd.DataFrame | None) -> list[str]:
    """The crossovers in words (:func:`tlbench.analysis.learning_curves.crossovers`), or
    why there are none; ``comparisons`` None: the test split is sealed (pilot)."""
    if comparisons is None:
        return [
            "No crossovers are stated: they come from the paired bootstrap of the test "
            "predictions, and the test split is sealed (pilot study)."
        ]
    margin = float(comparisons["margin"].iloc[0]) if "margin" in comparisons else None
    how = (
        "Two cells are compared at each budget by the paired bootstrap of that budget's "
        "runs over seeds and test images, the intervals holding together over the "
        "budget's pairs of cells (better / worse: the interval of the difference lies "
        "above / below 0; equivalent: inside the margin"
        + (f" ±{margin:g}" if margin is not None else "")
        + "; inconclusive: anything else; one seed of a stochastic strategy: "
        "inconclusive); a crossover is a difference told apart at one budget whose sign "
        "is reversed at another."
    )
    sentences = crossovers(comparisons)
    if sentences:
        return [how, "", "Crossovers:", "", *[f"* {s}" for s in sentences]]
    return [
        how,
        "",
        "No crossovers: no pair of cells is better at one budget and worse at another.",
    ]


def page_text(
    curves: pd.DataFrame,
    dataset: str,
    split: str,
    val_images: int | None,
    comparisons: pd.DataFrame | None = None,
) -> str:
    """The dataset's learning-curve section (reStructuredText, no title): what is plotted,
    the crossovers in words, what validation size the settings were chosen with."""
    what = "test accuracy" if split == "test" else "validation accuracy (pilot study)"
    lines = [
        f"Learning curves of ``{dataset}``: {what} against labelled training images per "
        "class (log axis; 'all' at the class mean size), one line per cell, band: "
        "95 % t-interval over seeds (scipy.stats.t), that cell's alone.",
        "",
    ]
    single = sorted(set(curves.loc[curves["seeds"] < 2, "cell"]))
    if single:
        lines += [f"Cells with one seed have no band and are never told apart from "
                  f"another: {', '.join(single)}.", ""]  # fmt: skip
    lines += crossover_lines(comparisons)
    if val_images is not None:
        lines += [
            "",
            f"Every budget's runs were validated on the same {val_images} validation images "
            "(early stopping and the best epoch were chosen on them); only the training "
            "split is cut to the budget.",
        ]
    return "\n".join(lines) + "\n"


def write_learning_curves(
    study: pd.DataFrame,
    dataset: str,
    figure: str | os.PathLike,
    page: str | os.PathLike,
    table_stem: str | os.PathLike,
    settings: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """The figure, the page (rst) and the table (csv/md/html) of one dataset's curves;
    ``settings``: the study's ``verdict`` section (margin, reps, seed) for the
    crossovers' paired bootstrap."""

    split = tables.reported_split(study)
    rows = study[study["dataset"] == dataset]
    if rows.empty:
        raise ValueError(f"the study has no runs of dataset {dataset!r}")
    curves = curve_table(rows, split)
    val = rows["val_n"].dropna()
    val_images = int(val.iloc[0]) if len(val) else None
    comparisons = paired_comparisons(rows, split, settings)
    plot(curves, dataset, split, figure)
    with atomic_file(page) as handle:
        handle.write(page_text(curves, dataset, split, val_images, comparisons))
    render.write_table(curves, table_stem)
    return curves


def paired_comparisons(
    rows: pd.DataFrame, split: str, settings: Mapping[str, Any] | None = None
) -> pd.DataFrame | None:
    """:func:`tlbench.analysis.learning_curves.budget_comparisons` of a dataset's runs
    with the study's ``verdict`` settings and a ``margin`` column; None in a pilot
    study (no test predictions)."""
    if split != "test":
        return None
    settings = dict(settings or {})
    margin = float(settings.get("margin", MARGIN))
    comparisons = budget_comparisons(
        rows, margin, int(settings.get("reps", REPS)), int(settings.get("seed", SEED))
    )
    return comparisons.assign(margin=margin)
