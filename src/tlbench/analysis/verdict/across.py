"""Across datasets: the strategies compared pair by pair with baycomp's Bayesian
signed-rank test (Benavoli et al., ICML 2014; JMLR 2017), whose region of practical
equivalence (the study's ``verdict.margin``) tells *equivalent* from *inconclusive*;
its figure is drawn in :mod:`tlbench.report.figures.verdict`.

A strategy's score on a dataset is the test accuracy of its validation-best cell
there. For each pair (A, B) the test gives the posterior probabilities that A is
better by more than the margin, that they are within it, and that B is; the
outcome is *better* / *worse* / *equivalent* when one of them reaches
:data:`DECIDE`, *inconclusive* otherwise. Mean ranks are given as a description only:
Friedman's chi-square approximation and Nemenyi's test need many datasets (Demšar,
JMLR 2006: N > 10), and on three datasets the approximation gives p = 0.029 where
the exact p is 0.0017.

With fewer than :data:`MIN_DATASETS` datasets every outcome is *inconclusive* and
``warning`` says why: a signed-rank comparison cannot reach two-sided 5 % with five
or fewer datasets (the exact Wilcoxon test's smallest p is 2 / 2^N = 0.0625 at
N = 5), and the Bayesian test's posterior then reflects its prior as much as the
data (baycomp says 0.97 "better" from two datasets). The pages then print no
headline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tlbench.analysis.verdict.bootstrap import MARGIN

#: Fewest datasets for an outcome across datasets (module docstring).
MIN_DATASETS = 6
#: Posterior probability at which an outcome is said.
DECIDE = 0.95
#: Posterior samples of each pair's test, and their seed.
SAMPLES = 20000
SEED = 0
#: Columns of :attr:`AcrossDatasets.pairs`.
PAIR_COLUMNS = ["a", "b", "p_a_better", "p_equivalent", "p_b_better", "outcome"]


@dataclass
class AcrossDatasets:
    """The strategies compared across datasets (module docstring)."""

    scores: pd.DataFrame  #: datasets × strategies test accuracy
    ranks: pd.Series  #: mean rank per strategy (1 = best), a description
    pairs: pd.DataFrame  #: :data:`PAIR_COLUMNS`, one row per pair (a before b in rank order)
    margin: float  #: the region of practical equivalence, ±margin
    warning: str = ""  #: why no outcome is said (too few datasets); "" when they are
    left_out: list[str] = field(default_factory=list)  #: strategies not on every dataset

    @property
    def enough(self) -> bool:
        """Whether the study has enough datasets for an outcome across them."""
        return not self.warning


def pair_outcome(p_a: float, p_equivalent: float, p_b: float, decide: float = DECIDE) -> str:
    """*better* (A), *worse*, *equivalent* or *inconclusive* from the posterior."""
    if p_a >= decide:
        return "better"
    if p_b >= decide:
        return "worse"
    if p_equivalent >= decide:
        return "equivalent"
    return "inconclusive"


def across_datasets(
    cells: pd.DataFrame, margin: float = MARGIN, samples: int = SAMPLES, seed: int = SEED
) -> AcrossDatasets:
    """The strategies of the ranking's ``cells`` compared across datasets (module
    docstring). Needs two or more datasets and two or more strategies present in all of
    them (``ValueError`` otherwise, naming what is there)."""
    # deferred: baycomp (and its matplotlib import) only with two or more datasets
    from baycomp import SignedRankTest

    if margin <= 0:
        raise ValueError(f"the region of practical equivalence needs a margin > 0, got {margin}")
    scores, left_out = strategy_scores(cells)
    datasets, strategies = scores.shape
    if datasets < 2 or strategies < 2:
        raise ValueError(
            "a comparison across datasets needs >= 2 datasets and >= 2 strategies run on all "
            f"of them; the study has datasets {list(scores.index)} and common strategies "
            f"{list(scores.columns)}"
        )
    ranks = scores.rank(axis=1, ascending=False).mean().sort_values(kind="stable")
    warning = ""
    if datasets < MIN_DATASETS:
        warning = (
            f"{datasets} datasets are too few to compare strategies across datasets: a "
            f"signed-rank comparison needs at least {MIN_DATASETS} to reach 5 % (its "
            "smallest two-sided p with 5 datasets is 0.0625), so every pair is inconclusive "
            "and there is no headline"
        )
    order = list(ranks.index)
    rows = []
    for i, a in enumerate(order):
        for b in order[i + 1 :]:
            # baycomp: (p_left, p_rope, p_right) of y - x; x = b, y = a: right = a better
            p_b, p_eq, p_a = SignedRankTest.probs(
                scores[b].to_numpy(np.float64),
                scores[a].to_numpy(np.float64),
                margin,
                nsamples=samples,
                random_state=seed,
            )
            outcome = "inconclusive" if warning else pair_outcome(p_a, p_eq, p_b)
            rows.append([a, b, float(p_a), float(p_eq), float(p_b), outcome])
    pairs = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    return AcrossDatasets(scores, ranks, pairs, margin, warning, left_out)


def across_or_none(
    cells: pd.DataFrame, margin: float = MARGIN
) -> tuple[AcrossDatasets | None, str]:
    """:func:`across_datasets`, or ``None`` and the reason when the study cannot have it."""
    try:
        return across_datasets(cells, margin), ""
    except ValueError as error:
        return None, str(error)


def strategy_scores(cells: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Test accuracy of each strategy per dataset (rows: datasets, columns: strategies)
    and the strategies left out because some dataset lacks them (not run there, or
    set aside there because they did not learn: tlbench.analysis.set_aside).

    A strategy's score on a dataset is the test accuracy of its validation-best cell
    there (the first of the strategy's cells in the ranking's validation order). Only
    strategies present in every dataset are compared (complete blocks).
    """
    first = cells.sort_values(["dataset", "rank"]).groupby(["dataset", "strategy"]).head(1)
    scores = first.pivot(index="dataset", columns="strategy", values="test_accuracy")
    complete = scores.dropna(axis=1)
    return complete, sorted(set(scores.columns) - set(complete.columns))
