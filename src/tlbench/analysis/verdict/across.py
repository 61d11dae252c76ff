"""Across datasets: Friedman's test over the datasets and Nemenyi's post-hoc test (Demšar,
JMLR 2006), with scikit-posthocs; the critical-difference diagram is drawn in
:mod:`tlbench.report.figures.verdict`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from tlbench.analysis.verdict.bootstrap import ALPHA


@dataclass
class AcrossDatasets:
    """Friedman's test over datasets and Nemenyi's post-hoc test of the strategies."""

    scores: pd.DataFrame  #: datasets × strategies test accuracy
    ranks: pd.Series  #: mean rank per strategy (1 = best)
    statistic: float  #: Friedman chi-square
    p_value: float
    nemenyi: pd.DataFrame  #: pairwise p-values
    critical_difference: float  #: Nemenyi's CD at alpha (Demšar 2006, eq. 5)
    alpha: float = ALPHA


def across_datasets(cells: pd.DataFrame, alpha: float = ALPHA) -> AcrossDatasets:
    """Friedman's test of the strategies over the study's datasets, Nemenyi's post-hoc.

    Needs two or more datasets and three or more strategies present in all of
    them (``ValueError`` otherwise, naming what is there). Uses scipy.stats
    (Friedman, studentized range for the critical difference) and
    scikit-posthocs (Nemenyi).
    """
    # deferred: scikit-posthocs only with two or more datasets
    import scikit_posthocs

    scores = strategy_scores(cells)
    datasets, strategies = scores.shape
    if datasets < 2 or strategies < 3:
        raise ValueError(
            "a comparison across datasets needs >= 2 datasets and >= 3 strategies run on all "
            f"of them; the study has datasets {list(scores.index)} and common strategies "
            f"{list(scores.columns)}"
        )
    statistic, p_value = stats.friedmanchisquare(*(scores[c] for c in scores.columns))
    ranks = scores.rank(axis=1, ascending=False).mean().sort_values()
    nemenyi = scikit_posthocs.posthoc_nemenyi_friedman(scores.to_numpy())
    nemenyi.index = nemenyi.columns = list(scores.columns)
    q = stats.studentized_range.ppf(1 - alpha, strategies, np.inf) / math.sqrt(2)
    cd = q * math.sqrt(strategies * (strategies + 1) / (6 * datasets))
    return AcrossDatasets(scores, ranks, float(statistic), float(p_value), nemenyi, cd, alpha)


def across_or_none(cells: pd.DataFrame) -> tuple[AcrossDatasets | None, str]:
    """:func:`across_datasets`, or ``None`` and the reason when the study cannot have it."""
    try:
        return across_datasets(cells), ""
    except ValueError as error:
        return None, str(error)


# --------------------------------------------------------------------------- across datasets


def strategy_scores(cells: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy of each strategy per dataset (rows: datasets, columns: strategies).

    A strategy's score on a dataset is the test accuracy of its
    validation-best cell there (backbone and augmentation chosen by
    validation: the first of the strategy's cells in :func:`cell_table`'s
    order). Only strategies present in every dataset are kept (Friedman's
    test needs complete blocks).
    """
    first = cells.sort_values(["dataset", "rank"]).groupby(["dataset", "strategy"]).head(1)
    scores = first.pivot(index="dataset", columns="strategy", values="test_accuracy")
    return scores.dropna(axis=1)
