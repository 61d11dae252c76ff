"""The answer as a picture, on the report's first page: per dataset, each cell's difference
from the cell validation chose, with its interval, the ±margin band, coloured by the
comparison's outcome, and the cell's cost (training seconds) beside it.

One entry point, :func:`answer_figure`, drawn from the verdict's cell table
(:func:`tlbench.analysis.verdict.assess.assess` ``.whole()``: columns ``dataset``,
``backbone``, ``strategy``, ``augmentation``, ``rank``, ``verdict``, ``difference``,
``diff_low``, ``diff_high``, ``train_seconds``) and the margin. The sentences go under
it in the front section (:mod:`tlbench.report.pages.verdict`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from tlbench.analysis.criteria import WORDS
from tlbench.report.figures.base import save_figure

#: Colour of each outcome (the chosen cell, the four outcomes).
OUTCOME_COLOURS = {
    "selected": "#000000",
    "better": "#1a9641",
    "worse": "#d7191c",
    "equivalent": "#2c7bb6",
    "inconclusive": "#969696",
}
#: Columns the figure reads.
COLUMNS = ["dataset", "backbone", "strategy", "augmentation", "rank", "verdict",
           "difference", "diff_low", "diff_high", "train_seconds"]  # fmt: skip


def answer_figure(cells: pd.DataFrame, margin: float, path: str | os.PathLike) -> Path:
    """The answer as a PNG at ``path`` (module docstring): one panel per dataset, its
    cells in validation order (the chosen one on top, at 0), the difference to the
    chosen cell with its interval against the shaded ±``margin`` band, each point
    coloured by its outcome; beside it each cell's mean training seconds (log scale)."""
    missing = [c for c in COLUMNS if c not in cells]
    if missing:
        raise ValueError(f"answer_figure: the cell table lacks column(s) {', '.join(missing)}")
    unknown = sorted(set(cells["verdict"]) - set(OUTCOME_COLOURS))
    if unknown:
        raise ValueError(
            f"answer_figure: outcome(s) {unknown} have no colour; known: {list(OUTCOME_COLOURS)}"
        )
    datasets = list(dict.fromkeys(cells["dataset"]))
    sizes = [int((cells["dataset"] == d).sum()) for d in datasets]
    fig = Figure(figsize=(10, 1.0 + sum(0.32 * n + 0.7 for n in sizes)))
    grid = fig.add_gridspec(len(datasets), 2, width_ratios=(3, 1), height_ratios=sizes or [1])
    for row, dataset in enumerate(datasets):
        table = cells[cells["dataset"] == dataset].sort_values("rank", kind="stable")
        _panel(fig.add_subplot(grid[row, 0]), fig.add_subplot(grid[row, 1]), table, margin)
    handles = [
        fig.axes[0].scatter([], [], color=colour, label=name)
        for name, colour in OUTCOME_COLOURS.items()
        if name in set(cells["verdict"])
    ]
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False,
               bbox_to_anchor=(0.4, 1.0), fontsize=8)  # fmt: skip
    fig.suptitle(
        f"Each cell minus the cell chosen by validation (95 % interval); band: ±{margin:g}",
        y=1.03,
        fontsize=10,
    )
    return save_figure(fig, path)


def _panel(ax, cost, table: pd.DataFrame, margin: float) -> None:
    """One dataset: differences with intervals (``ax``) and training seconds (``cost``)."""
    names = [
        f"{b}/{s}/{a}"
        for b, s, a in zip(table["backbone"], table["strategy"], table["augmentation"], strict=True)
    ]
    ys = list(range(len(table)))
    ax.axvspan(-margin, margin, color="#2c7bb6", alpha=0.15, lw=0)
    ax.axvline(0, color="#444444", lw=0.8)
    for y, (_, row) in zip(ys, table.iterrows(), strict=True):
        colour = OUTCOME_COLOURS[row["verdict"]]
        low, high = row["diff_low"], row["diff_high"]
        if pd.notna(low) and pd.notna(high):
            ax.plot([low, high], [y, y], color=colour, lw=2)
        ax.plot(row["difference"], y, "o", color=colour, ms=5)
        ax.text(
            1.01, y, row["verdict"], transform=ax.get_yaxis_transform(), va="center",
            fontsize=7, color=colour,
        )  # fmt: skip
    ax.set_yticks(ys, names, fontsize=7)
    ax.set_ylim(len(ys) - 0.5, -0.5)
    ax.set_title(str(table["dataset"].iloc[0]), loc="left", fontsize=9, fontweight="bold")
    compared = table["compared"].iloc[0] if "compared" in table else "accuracy"
    words = WORDS.get(compared, "accuracy") if isinstance(compared, str) else "accuracy"
    ax.set_xlabel(f"test {words} difference to the chosen cell", fontsize=7)
    ax.tick_params(axis="x", labelsize=7)
    seconds = table["train_seconds"].astype(float)
    cost.barh(ys, seconds.where(seconds > 0, math.nan), color="#bbbbbb")
    for y, value in zip(ys, seconds, strict=True):
        if pd.notna(value):
            cost.text(value, y, f" {value:.0f} s", va="center", fontsize=7)
    cost.set_ylim(len(ys) - 0.5, -0.5)
    cost.set_yticks([])
    if (seconds > 0).any():
        cost.set_xscale("log")
        cost.set_xlim(seconds[seconds > 0].min() / 2, seconds.max() * 8)
    cost.set_xlabel("training seconds (mean over seeds)", fontsize=7)
    cost.tick_params(axis="x", labelsize=7)
