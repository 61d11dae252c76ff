"""A dataset's learning-curve page: the curves' table, the figure and the crossovers in
words, written together (:func:`write_learning_curves`).
"""

from __future__ import annotations

import os

import pandas as pd

from tlbench.analysis import tables
from tlbench.analysis.learning_curves import crossovers, curve_table
from tlbench.core.atomic import atomic_file
from tlbench.report import render
from tlbench.report.figures.learning_curves import plot


def page_text(curves: pd.DataFrame, dataset: str, split: str, val_images: int | None) -> str:
    """The dataset's learning-curve section (reStructuredText, no title): what is plotted,
    the crossovers in words, what validation size the settings were chosen with."""
    what = "test accuracy" if split == "test" else "validation accuracy (pilot study)"
    lines = [
        f"Learning curves of ``{dataset}``: {what} against labelled training images per "
        "class (log axis; 'all' at the class mean size), one line per cell, band: "
        "95 % t-interval over seeds (scipy.stats.t).",
        "",
    ]
    single = sorted(set(curves.loc[curves["seeds"] < 2, "cell"]))
    if single:
        lines += [f"Cells with one seed have no interval and are not compared: "
                  f"{', '.join(single)}.", ""]  # fmt: skip
    sentences = crossovers(curves)
    if sentences:
        lines += ["Crossovers (where one cell's interval stops overlapping another's):", ""]
        lines += [f"* {s}" for s in sentences]
    else:
        lines.append(
            "No crossovers: at every budget each pair of cells keeps the same relation "
            "(one interval above the other, or overlapping)."
        )
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
) -> pd.DataFrame:
    """The figure, the page (rst) and the table (csv/md/html) of one dataset's curves."""

    split = tables.reported_split(study)
    rows = study[study["dataset"] == dataset]
    if rows.empty:
        raise ValueError(f"the study has no runs of dataset {dataset!r}")
    curves = curve_table(rows, split)
    val = rows["val_n"].dropna()
    val_images = int(val.iloc[0]) if len(val) else None
    plot(curves, dataset, split, figure)
    with atomic_file(page) as handle:
        handle.write(page_text(curves, dataset, split, val_images))
    render.write_table(curves, table_stem)
    return curves
