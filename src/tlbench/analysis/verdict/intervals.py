"""Intervals of differences from the bootstrap replicates, and the four outcomes.

:func:`intervals` gives the intervals of a *family* of differences (e.g. every cell
of a dataset against the chosen one) that hold together: a simultaneous band from
the joint bootstrap replicates (the max-|t| method: the ``level`` quantile ``q`` of
the largest standardised deviation over the family's differences in one replicate;
each difference gets ``±q`` of its bootstrap standard deviation), so that with 95 %
probability *every* interval of the family covers its true difference, whatever the
number of comparisons. A family of one is the ordinary symmetric 95 % interval.
Each half-width is then widened from the normal to Student's t with the
Welch-Satterthwaite degrees of freedom of the seed level alone (:func:`welch_df`): a
seed variance estimated from three runs has 2 degrees of freedom, however much of the
difference's variance the test images add.

:func:`outcome` words an interval [low, high] of A - B against the margin m:

* **equivalent**: the interval lies inside [-m, m] (practically the same);
* **better**: it lies above 0 (and is not inside the margin);
* **worse**: it lies below 0 (and is not inside the margin);
* **inconclusive**: anything else: the data cannot tell.

A cell with one seed of a stochastic strategy is always *inconclusive*
(:func:`judge`): one run says nothing about how another seed would do.
:func:`compare_cells` is the whole comparison on plain arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from tlbench.analysis.verdict.bootstrap import (
    LEVEL,
    MARGIN,
    POOL_BELOW,
    REPS,
    SEED,
    Replicates,
    bootstrap,
)

BETTER, WORSE, EQUIVALENT, INCONCLUSIVE = "better", "worse", "equivalent", "inconclusive"
#: The four outcomes of a comparison, in the order pages list them.
OUTCOMES = (BETTER, EQUIVALENT, INCONCLUSIVE, WORSE)
#: Why a comparison with a one-seed cell is inconclusive.
ONE_SEED = "one seed of a stochastic strategy: another seed could land elsewhere"

#: A difference of cell a and cell b (``b`` None: cell a's accuracy itself).
Contrast = tuple[int, "int | None"]


def outcome(low: float, high: float, margin: float = MARGIN) -> str:
    """The outcome of A against B from the interval [low, high] of A - B (module docstring)."""
    if margin < 0:
        raise ValueError(f"verdict margin must be >= 0, got {margin}")
    if low > high:
        raise ValueError(f"interval low {low} is above high {high}")
    if -margin <= low and high <= margin:
        return EQUIVALENT
    if low > 0:
        return BETTER
    if high < 0:
        return WORSE
    return INCONCLUSIVE


def non_inferior(low: float, margin: float = MARGIN) -> bool:
    """Whether A is at most ``margin`` worse than B: the interval of A - B starts at or
    above ``-margin``."""
    return low >= -margin


def _weights(replicates: Replicates, contrasts: Sequence[Contrast]) -> np.ndarray:
    cells = len(replicates.point)
    weights = np.zeros((len(contrasts), cells))
    for k, (a, b) in enumerate(contrasts):
        for index in (a, b):
            if index is not None and not 0 <= index < cells:
                raise ValueError(f"cell index {index} outside 0..{cells - 1}")
        weights[k, a] += 1.0
        if b is not None:
            if a == b:
                raise ValueError(f"a difference needs two cells, got {a} twice")
            weights[k, b] -= 1.0
    return weights


def welch_df(replicates: Replicates, weights: np.ndarray) -> float:
    """Degrees of freedom of a contrast's interval: Welch-Satterthwaite over its sources of
    seed variance alone, ``S² / sum_s (v_s² / df_s)`` with ``S = sum_s v_s`` (each cell's
    own estimate, or the pooled one once for all cells that share it); inf when no source
    is estimated (deterministic cells); 0 when a stochastic cell of the contrast has no
    estimate at all (one seed, nothing to pool): its seed variation is unknown, and the
    interval spans the whole range.

    The image level's part of the contrast's variance is left out of the numerator.
    It is known far better (thousands of images, or ~100 groups) than a seed variance
    from 3 runs, and counting it (``V²`` with ``V`` the whole variance) makes the degrees
    of freedom depend on the seed estimates' chance size: a seed variance that came out
    small by chance leaves the image part dominant, the degrees of freedom rise and the t
    quantile shrinks exactly when the interval is already too narrow. Simulated with seed
    spreads tenfold apart (benchmarks' uneven-3), the band then covered every difference
    in 0.88 of the studies, not 0.95. With the image part known, the studentised
    difference has lighter tails than Student's t at the seed level's degrees of freedom
    (a normal over the square root of ``image + seed * chi2_df / df`` is a mixture of
    normals whose scale varies less than t's, and its tail probability is convex in
    that scale), so this is conservative whatever the two parts' true shares; it costs
    most where the image part dominates and the seeds are few.
    """
    parts: dict[int, float] = {}
    dfs: dict[int, float] = {}
    for c, w in enumerate(weights):
        df = float(replicates.seed_df[c])
        if w == 0:
            continue
        if df == 0 and replicates.stochastic[c]:
            return 0.0
        if not 0 < df < math.inf:
            continue
        source = int(replicates.source[c])
        parts[source] = parts.get(source, 0.0) + w * w * float(replicates.seed_var[c])
        dfs[source] = df
    spread = sum(v * v / dfs[s] for s, v in parts.items())
    return sum(parts.values()) ** 2 / spread if spread > 0 else math.inf


def intervals(
    replicates: Replicates,
    contrasts: Sequence[Contrast],
    level: float = LEVEL,
    simultaneous: bool = True,
) -> pd.DataFrame:
    """The ``level`` intervals of a family of contrasts (module docstring).

    Returns one row per contrast: ``point``, ``low``, ``high`` (simultaneous over the
    family when ``simultaneous``, else each on its own), ``sd`` (bootstrap standard
    deviation) and ``df`` (:func:`welch_df`). Clipped to [0, 1] for an accuracy,
    [-1, 1] for a difference.
    """
    if not 0 < level < 1:
        raise ValueError(f"interval level must be in (0, 1), got {level}")
    if not contrasts:
        return pd.DataFrame(columns=["point", "low", "high", "sd", "df"])
    weights = _weights(replicates, contrasts)
    values = replicates.values @ weights.T
    point = weights @ replicates.point
    sd = values.std(axis=0)
    live = sd > 0
    if simultaneous and live.sum() > 1:
        deviation = np.abs(values[:, live] - point[live]) / sd[live]
        q = float(np.quantile(deviation.max(axis=1), level))
        tail = float(2 * stats.norm.sf(q))  # the level of each interval of the band
    else:
        tail = 1 - level
    records = []
    for k in range(len(contrasts)):
        df = welch_df(replicates, weights[k])
        if df == 0:  # seed variation unknown: nothing bounds the difference
            half = math.inf
        else:
            quantile = stats.t.isf(tail / 2, df) if math.isfinite(df) else stats.norm.isf(tail / 2)
            half = float(quantile * sd[k])
        floor = 0.0 if contrasts[k][1] is None else -1.0
        records.append(
            {
                "point": float(point[k]),
                "low": max(float(point[k]) - half, floor),
                "high": min(float(point[k]) + half, 1.0),
                "sd": float(sd[k]),
                "df": df,
            }
        )
    return pd.DataFrame(records)


def interval(
    replicates: Replicates, a: int, b: int | None = None, level: float = LEVEL
) -> tuple[float, float]:
    """The ``level`` interval of cell ``a``'s accuracy, or of ``a - b``, on its own."""
    row = intervals(replicates, [(a, b)], level, simultaneous=False).iloc[0]
    return float(row["low"]), float(row["high"])


def single_seed(replicates: Replicates, cell: int) -> bool:
    """Whether ``cell`` has one seed of a stochastic strategy."""
    return bool(replicates.stochastic[cell]) and int(replicates.seeds[cell]) < 2


def judge(
    replicates: Replicates, a: int, b: int, low: float, high: float, margin: float = MARGIN
) -> tuple[str, str]:
    """``(outcome, reason)`` of cell ``a`` against cell ``b`` from the interval of a - b:
    :func:`outcome`, but *inconclusive* whenever one of them has one seed of a
    stochastic strategy (``reason`` says so; empty otherwise)."""
    lonely = [c for c in (a, b) if single_seed(replicates, c)]
    if lonely:
        return INCONCLUSIVE, ONE_SEED
    return outcome(low, high, margin), ""


def compare_cells(
    correct: Sequence[np.ndarray],
    *,
    reference: int = 0,
    groups: np.ndarray | Sequence[Any] | None = None,
    stochastic: Sequence[bool] | None = None,
    margin: float = MARGIN,
    level: float = LEVEL,
    reps: int = REPS,
    rng: np.random.Generator | int = SEED,
    pool_below: int = POOL_BELOW,
) -> pd.DataFrame:
    """Every cell against cell ``reference``, from plain arrays.

    ``correct``: per cell a ``(seeds, images)`` bool array over the same test images;
    ``groups``: optional group id per image (resampled together); ``stochastic``: per
    cell whether another seed gives another run (default all). One row per other
    cell: ``cell`` (its index), ``seeds``, ``accuracy``, ``difference`` (cell -
    reference), ``low``..``high`` (simultaneous over the family of comparisons with
    the reference: what ``outcome`` reads), ``marginal_low``..``marginal_high`` (the
    same difference's interval on its own), ``df``, ``outcome``, ``reason`` and
    ``non_inferior`` (``low >= -margin``).
    """
    replicates = bootstrap(
        correct, reps, rng, groups=groups, stochastic=stochastic, pool_below=pool_below
    )
    others = [c for c in range(len(correct)) if c != reference]
    if reference not in range(len(correct)):
        raise ValueError(f"reference {reference} outside 0..{len(correct) - 1}")
    contrasts: list[Contrast] = [(c, reference) for c in others]
    family = intervals(replicates, contrasts, level)
    alone = intervals(replicates, contrasts, level, simultaneous=False)
    records = []
    for k, c in enumerate(others):
        low, high = float(family["low"].iloc[k]), float(family["high"].iloc[k])
        verdict, reason = judge(replicates, c, reference, low, high, margin)
        records.append(
            {
                "cell": c,
                "seeds": int(replicates.seeds[c]),
                "accuracy": float(replicates.point[c]),
                "difference": float(family["point"].iloc[k]),
                "low": low,
                "high": high,
                "marginal_low": float(alone["low"].iloc[k]),
                "marginal_high": float(alone["high"].iloc[k]),
                "df": float(family["df"].iloc[k]),
                "outcome": verdict,
                "reason": reason,
                "non_inferior": non_inferior(low, margin) and not reason,
            }
        )
    return pd.DataFrame(records)
