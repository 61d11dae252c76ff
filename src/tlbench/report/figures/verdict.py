"""The figure across datasets: for each pair of strategies, the posterior probabilities of
baycomp's Bayesian signed-rank test (A better, within ±margin, B better), from
:func:`tlbench.analysis.verdict.across.across_datasets`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from tlbench.analysis.verdict.across import AcrossDatasets, across_or_none
from tlbench.analysis.verdict.bootstrap import MARGIN
from tlbench.core.atomic import atomic_file
from tlbench.report.figures.base import message_figure

#: Colours of the three regions of the posterior.
REGION_COLOURS = ("#2b8cbe", "#bdbdbd", "#e6550d")


def posterior_pairs(result: AcrossDatasets, path: str | os.PathLike) -> Path:
    """One bar per pair of strategies split into P(A better), P(equivalent within
    ±margin) and P(B better), each bar labelled with its outcome, as a PNG written
    atomically (:func:`across_figure` draws it only with enough datasets)."""
    pairs = result.pairs
    fig = Figure(figsize=(8, 1.6 + 0.45 * len(pairs)))
    ax = fig.add_subplot()
    labels = [f"{a} vs {b}" for a, b in zip(pairs["a"], pairs["b"], strict=True)]
    left = [0.0] * len(pairs)
    names = ("A better", f"within ±{result.margin:g}", "B better")
    columns = ("p_a_better", "p_equivalent", "p_b_better")
    for column, colour, name in zip(columns, REGION_COLOURS, names, strict=True):
        ax.barh(labels, pairs[column], left=left, color=colour, label=name)
        left = [x + v for x, v in zip(left, pairs[column], strict=True)]
    for y, outcome in enumerate(pairs["outcome"]):
        ax.text(1.01, y, outcome, va="center", fontsize=8)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("posterior probability (baycomp's Bayesian signed-rank test)")
    datasets = ", ".join(map(str, result.scores.index))
    title = f"Strategies across {len(result.scores)} datasets ({datasets})"
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.02),
              ncol=3, fontsize=8, frameon=False)  # fmt: skip
    path = Path(path)
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100, bbox_inches="tight")
    return path


def critical_difference(
    ranking_csv: str | os.PathLike, path: str | os.PathLike, margin: float = MARGIN
) -> Path:
    """The figure across datasets (:func:`posterior_pairs`) from the strategy ranking's
    CSV; a figure saying why when the study's finished runs do not allow the comparison."""
    cells = pd.read_csv(ranking_csv)
    if "budget" in cells:  # label budgets: datasets are compared on their whole training splits
        cells = cells[cells["budget"] == "all"]
    if "test_accuracy" not in cells:
        across, reason = None, "the test split is sealed (pilot study): no test accuracies"
    else:
        across, reason = across_or_none(cells, margin)
    if across is not None:
        return across_figure(across, path)

    return message_figure(path, "No comparison across datasets", [reason])


def across_figure(result: AcrossDatasets, path: str | os.PathLike) -> Path:
    """:func:`posterior_pairs`, or with too few datasets the warning alone: no picture
    of posteriors that the method cannot stand behind."""
    if result.warning:
        return message_figure(path, "No comparison across datasets", [result.warning + "."])
    return posterior_pairs(result, path)
