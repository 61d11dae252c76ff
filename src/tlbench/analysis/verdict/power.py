"""Seeds to resolve: how many seeds per cell would detect a true difference of the margin
between two cells, from a t-based power calculation (statsmodels) on the seed variance
pooled over the dataset's cells, rounded to what that estimate can support.

Two cells' test accuracies, each the mean of ``n`` seeds on the same test images,
differ by a seed part (variance ``2 s² / n``, ``s²`` the seed-to-seed variance
of a cell's accuracy) and a test-set part ``v_test`` that no number of seeds
removes (the paired per-image difference's variance over images, less the
run-by-image noise already in the seed part, over the number of images). The
t-test of the difference with ``2 n - 2`` degrees of freedom has noncentrality
``margin / sqrt(2 s² / n + v_test)``; :func:`seeds_for` finds the smallest ``n``
whose power (``statsmodels.stats.power.TTestIndPower``, with the effect size that
gives this noncentrality) reaches :data:`POWER` at two-sided level :data:`ALPHA`
(counting rejections in the direction of the difference only).

``s²`` is pooled over the dataset's cells with two or more seeds (a cell's own 2
or 3 seeds say little about it), and is itself an estimate with ``sum(S_c - 1)``
degrees of freedom: :func:`seeds_to_resolve` also gives the seeds needed at the
ends of the chi-square 80 % interval of ``s²``, and :func:`seeds_text` rounds to
one significant figure with that range, so a page never prints "1125 seeds".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: Two-sided level and power of the calculation.
ALPHA = 0.05
POWER = 0.80
#: Beyond this many seeds per cell the answer is "more than" it.
MAX_SEEDS = 1000
#: Confidence of the range given for the seed variance's uncertainty.
RANGE_LEVEL = 0.80


@dataclass(frozen=True)
class SeedsToResolve:
    """Seeds per cell at the pooled seed variance (``n``) and at the ends of its
    :data:`RANGE_LEVEL` interval (``low``, ``high``); ``inf``: no number of seeds suffices
    (the test set's part alone is too large for the margin, or more than
    :data:`MAX_SEEDS`); ``nan``: no cell of the dataset has two seeds."""

    n: float
    low: float
    high: float
    df: int  #: degrees of freedom of the pooled seed variance
    test_limited: bool  #: the test set alone keeps the margin out of reach


def pooled_seed_variance(correct: Sequence[np.ndarray]) -> tuple[float, int]:
    """The seed-to-seed variance of a cell's test accuracy pooled over cells
    (``correct``: per cell a ``(seeds, images)`` bool array) with two or more seeds,
    weighted by their degrees of freedom; ``(nan, 0)`` when none has two."""
    total, df = 0.0, 0
    for m in correct:
        if m.shape[0] >= 2:
            total += float(m.mean(axis=1, dtype=np.float64).var(ddof=1)) * (m.shape[0] - 1)
            df += m.shape[0] - 1
    return (total / df, df) if df else (math.nan, 0)


def test_variance(a: np.ndarray, b: np.ndarray) -> float:
    """The variance of two cells' difference that comes from the finite test set: the
    paired per-image difference's variance over images, less each cell's run-by-image
    noise (already in the seed part), over the number of images; at least 0."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    per_image = a.mean(axis=0) - b.mean(axis=0)
    noise = sum(m.var(axis=0, ddof=1).mean() / m.shape[0] for m in (a, b) if m.shape[0] > 1)
    return max(0.0, float(per_image.var(ddof=1)) - noise) / a.shape[1]


def seeds_for(
    seed_var: float,
    test_var: float,
    margin: float,
    alpha: float = ALPHA,
    power: float = POWER,
    max_seeds: int = MAX_SEEDS,
) -> float:
    """The smallest seeds per cell (>= 2) at which the two-sided t-test of two cells'
    difference has ``power`` against a true difference of ``margin`` (module docstring);
    ``inf`` when none up to ``max_seeds`` does."""
    # deferred: statsmodels is imported only where a verdict is computed
    from statsmodels.stats.power import TTestIndPower

    if margin <= 0:
        raise ValueError(f"seeds to resolve need a margin > 0, got {margin}")
    if not seed_var >= 0 or not test_var >= 0:
        raise ValueError(f"variances must be >= 0, got seed {seed_var}, test {test_var}")
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    if z**2 * test_var >= margin**2:  # even infinitely many seeds leave the test set's part
        return math.inf
    analysis = TTestIndPower()

    def reached(n: int) -> bool:
        # effect size d with d * sqrt(n / 2) = margin / sqrt(2 s² / n + v_test)
        spread = math.sqrt(seed_var + n * test_var / 2)
        if spread == 0:
            return True
        # two-sided at alpha: the tail in the difference's direction (a rejection of the
        # wrong sign does not resolve it; statsmodels' lower tail is NaN at large effects)
        return analysis.power(margin / spread, n, alpha / 2, alternative="larger") >= power

    if not reached(max_seeds):
        return math.inf
    low, high = 2, max_seeds  # reached is monotone in n: bisect
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if reached(middle) else (middle + 1, high)
    return float(low)


def seeds_to_resolve(
    cells: Sequence[np.ndarray],
    a: int,
    b: int,
    margin: float,
    alpha: float = ALPHA,
    power: float = POWER,
) -> SeedsToResolve:
    """Seeds per cell that would resolve a true difference of ``margin`` between cells
    ``a`` and ``b`` of ``cells`` (the dataset's ``(seeds, images)`` correctness arrays),
    with the seed variance pooled over all of ``cells``."""
    seed_var, df = pooled_seed_variance(cells)
    test_var = test_variance(cells[a], cells[b])
    if df == 0:
        return SeedsToResolve(math.nan, math.nan, math.nan, 0, False)
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    limited = z**2 * test_var >= margin**2
    tail = (1 - RANGE_LEVEL) / 2
    small, large = (df * seed_var / stats.chi2.ppf(q, df) for q in (1 - tail, tail))
    n, low, high = (seeds_for(v, test_var, margin, alpha, power) for v in (seed_var, small, large))
    return SeedsToResolve(n, low, high, df, limited)


def significant(value: float) -> int:
    """``value`` rounded to one significant figure (7, 60, 300, 1000)."""
    if value < 10:
        return int(round(value))
    scale = 10 ** math.floor(math.log10(value))
    return int(round(value / scale) * scale)


def seeds_text(result: SeedsToResolve) -> str:
    """Seeds to resolve in words, rounded to what a pooled variance of ``df`` degrees of
    freedom supports: ``about 300 (100 to 900)``, or why there is no number."""
    if math.isnan(result.n):
        return "n/a (no cell has two seeds: no estimate of seed variation)"
    if result.test_limited:
        return "none suffice (the test set alone is too small for the margin)"
    if math.isinf(result.n):
        return f"more than {MAX_SEEDS}"
    high = f"more than {MAX_SEEDS}" if math.isinf(result.high) else str(significant(result.high))
    spread = f"{significant(result.low)} to {high}"
    return (
        f"about {significant(result.n)} ({spread} for the seed variance's "
        f"{RANGE_LEVEL * 100:.0f} % interval, {result.df} degrees of freedom)"
    )
