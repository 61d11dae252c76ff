"""Accuracy against cost, one figure per dataset: each cell's test accuracy (with its 95 %
interval) against its parameters, forward FLOPs per image, FLOPs x training images seen
(the verdict's default cost), training seconds and peak memory (:mod:`tlbench.training.cost`), each point coloured by its verdict outcome.

Drawn from the strategy ranking (:func:`tlbench.analysis.verdict.assess.ranking`,
``tables/strategy_ranking.csv``): one row per cell with ``verdict``, ``test_accuracy``,
``ci_low``, ``ci_high`` and the cells' mean costs. With label budgets, one row of panels
per budget.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from tlbench.report.figures.answer import OUTCOME_COLOURS
from tlbench.report.figures.base import message_figure, save_figure

#: The figure's panels: ranking column -> x-axis label.
COST_AXES = {
    "params_total": "parameters",
    "forward_flops": "forward FLOPs per image (XLA)",
    "flops_seen": "FLOPs x training images seen",
    "train_seconds": "training seconds (this machine)",
    "peak_rss_mb": "peak process memory (MB)",
}


def cost_figure(ranking: pd.DataFrame, dataset: str, path: str | os.PathLike) -> Path:
    """The accuracy-against-cost figure of ``dataset`` at ``path`` (module docstring); a
    figure saying why when there is nothing to draw (a pilot study, no cell, no cost)."""
    if "verdict" not in ranking or "ci_low" not in ranking:
        return message_figure(path, "No verdict", ["pilot study: the test split is sealed"])
    rows = ranking[ranking["dataset"].astype(str) == str(dataset)]
    if rows.empty:
        return message_figure(path, f"{dataset}: no cell", ["no cell of it has a verdict"])
    unknown = sorted(set(rows["verdict"]) - set(OUTCOME_COLOURS))
    if unknown:
        raise ValueError(
            f"cost_figure: outcome(s) {unknown} have no colour; known: {list(OUTCOME_COLOURS)}"
        )
    groups = list(rows.groupby("budget", sort=False)) if "budget" in rows else [(None, rows)]
    fig = Figure(figsize=(4 * len(COST_AXES), 3.4 * len(groups) + 0.6))
    axes = fig.subplots(len(groups), len(COST_AXES), squeeze=False)
    for (budget, cells), panels in zip(groups, axes, strict=True):
        for ax, (column, label) in zip(panels, COST_AXES.items(), strict=True):
            _panel(ax, cells, column, label)
        where = f"{dataset}, budget {budget}" if budget is not None else str(dataset)
        panels[0].set_ylabel(f"{where}\ntest accuracy (95 % interval)", fontsize=8)
    handles = [
        axes[0][0].scatter([], [], color=colour, label=name)
        for name, colour in OUTCOME_COLOURS.items()
        if name in set(rows["verdict"])
    ]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles),
               fontsize=8, frameon=False)  # fmt: skip
    fig.suptitle(f"{dataset}: test accuracy against cost, by verdict outcome")
    return save_figure(fig, path)


def _panel(ax, cells: pd.DataFrame, column: str, label: str) -> None:
    """One cost: each cell at (its cost, its test accuracy), its interval as a bar."""
    x = pd.to_numeric(cells[column], errors="coerce") if column in cells else None
    if x is None or not x.notna().any():
        ax.text(0.5, 0.5, f"{label}:\nnot recorded", ha="center", va="center",
                transform=ax.transAxes, fontsize=8)  # fmt: skip
        ax.set_xticks([])
        ax.set_yticks([])
        return
    for value, (_, cell) in zip(x, cells.iterrows(), strict=True):
        if not math.isfinite(value):
            continue
        colour = OUTCOME_COLOURS[cell["verdict"]]
        accuracy = float(cell["test_accuracy"])
        low, high = float(cell["ci_low"]), float(cell["ci_high"])
        ax.errorbar([value], [accuracy], yerr=[[accuracy - low], [high - accuracy]],
                    fmt="o", color=colour, ms=5, capsize=2, lw=1)  # fmt: skip
    finite = x[x > 0]
    if len(finite) and finite.max() / finite.min() > 20:
        ax.set_xscale("log")
    ax.set_xlabel(label, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
