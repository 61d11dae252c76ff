"""The verdict's figure: the critical-difference diagram of the strategies across datasets
(Demšar, JMLR 2006), from :func:`tlbench.analysis.verdict.across.across_datasets`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from tlbench.analysis.verdict.across import AcrossDatasets, across_or_none
from tlbench.core.atomic import atomic_file
from tlbench.report.figures.base import message_figure


def cd_diagram(result: AcrossDatasets, path: str | os.PathLike) -> Path:
    """The critical-difference diagram (scikit-posthocs) as a PNG, written atomically.

    Strategies are placed at their mean rank; a bar joins those Nemenyi's test
    does not tell apart at ``alpha``. The title gives Friedman's p-value.
    """
    # deferred: scikit-posthocs only with two or more datasets
    import scikit_posthocs

    fig = Figure(figsize=(8, 1.2 + 0.35 * len(result.ranks)))
    ax = fig.add_subplot()
    scikit_posthocs.critical_difference_diagram(
        result.ranks, result.nemenyi, alpha=result.alpha, ax=ax
    )
    datasets = ", ".join(map(str, result.scores.index))
    ax.set_title(
        f"Mean rank of strategies over {len(result.scores)} datasets ({datasets}); "
        f"Friedman p = {result.p_value:.3g}, Nemenyi CD = {result.critical_difference:.2f}",
        fontsize=9,
        pad=28,
    )
    path = Path(path)
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100, bbox_inches="tight")
    return path


def critical_difference(ranking_csv: str | os.PathLike, path: str | os.PathLike) -> Path:
    """The critical-difference diagram from the strategy ranking's CSV (:func:`ranking`);
    a figure saying why when the study's finished runs do not allow the comparison."""
    cells = pd.read_csv(ranking_csv)
    if "budget" in cells:  # label budgets: datasets are compared on their whole training splits
        cells = cells[cells["budget"] == "all"]
    if "test_accuracy" not in cells:
        across, reason = None, "the test split is sealed (pilot study): no test accuracies"
    else:
        across, reason = across_or_none(cells)
    if across is not None:
        return cd_diagram(across, path)

    return message_figure(path, "No comparison across datasets", [reason])
