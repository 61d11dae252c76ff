"""The paired, hierarchical bootstrap of a dataset's cells (:func:`bootstrap`), its
intervals (:func:`interval`), the verdict of an interval against the margin
(:func:`compare`) and the seeds that would resolve a tie (:func:`seeds_to_resolve`); the
method is told in :mod:`tlbench.analysis.verdict.assess`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from tlbench.analysis.runs import read_correct

#: Identity of a cell (a run without its seed).
CELL = ["dataset", "backbone", "strategy", "augmentation"]
#: Defaults of the study's ``verdict`` section (src/tlbench/study/schemas/config.schema.yaml).
MARGIN = 0.01
REPS = 2000
SEED = 0
LEVEL = 0.95
#: Power calculation of :func:`seeds_to_resolve`: two-sided 5 % test, 80 % power.
ALPHA = 0.05
POWER = 0.80


# --------------------------------------------------------------------------- reading runs


@dataclass
class Cell:
    """One cell of a dataset: its runs' test correctness and their study rows."""

    key: tuple[str, str, str, str]  #: (dataset, backbone, strategy, augmentation)
    correct: np.ndarray  #: (seeds, test images) bool: run s classified image i correctly
    rows: pd.DataFrame  #: the cell's finished runs (study table rows)

    @property
    def name(self) -> str:
        """``backbone/strategy/augmentation``."""
        return "/".join(self.key[1:])


def load_cells(study: pd.DataFrame) -> dict[str, list[Cell]]:
    """The finished runs of the study table grouped into cells, per dataset.

    Every run of a dataset must have been evaluated on the same test images
    (same ``y_true``); otherwise a ``ValueError`` names the two runs.
    """
    ok = study[study["status"] == "ok"]
    cells: dict[str, list[Cell]] = {}
    for dataset, runs in ok.groupby("dataset", sort=True):
        reference: tuple[Any, np.ndarray] | None = None
        for key, rows in runs.groupby(CELL[1:], sort=True):
            rows = rows.sort_values("seed")
            correct = []
            for path in rows["path"]:
                y_true, right = read_correct(path)
                if reference is None:
                    reference = (path, y_true)
                elif not np.array_equal(y_true, reference[1]):
                    raise ValueError(
                        f"runs of dataset {dataset!r} were tested on different images: "
                        f"{path} and {reference[0]} have different y_true"
                    )
                correct.append(right)
            cells.setdefault(str(dataset), []).append(
                Cell((str(dataset), *map(str, key)), np.vstack(correct), rows)
            )
    return cells


# --------------------------------------------------------------------------- bootstrap


@dataclass
class Replicates:
    """Bootstrap replicates of the cells' test accuracies (:func:`bootstrap`)."""

    values: np.ndarray  #: (reps, cells)
    point: np.ndarray  #: (cells,) the observed accuracies (mean over seeds and images)
    seed_var: np.ndarray  #: (cells,) variance across seeds / seeds (0 with one seed)
    seeds: np.ndarray  #: (cells,)

    def __getitem__(self, index: Any) -> np.ndarray:
        return self.values[index]


def bootstrap(
    correct: Sequence[np.ndarray], reps: int = REPS, rng: np.random.Generator | int = SEED
) -> Replicates:
    """Replicates of the test accuracy of each cell (``values``: ``(reps, cells)``).

    ``correct``: per cell a ``(seeds, images)`` bool array over the same test
    images. Each replicate draws the images once for all cells (paired) and
    the seeds per cell, with the corrections described in the module
    docstring. Vectorised: the image draws are multinomial counts of the
    distinct per-image patterns, then one matrix product per cell.
    """
    if not correct:
        raise ValueError("bootstrap needs at least one cell")
    if reps < 1:
        raise ValueError(f"bootstrap reps must be >= 1, got {reps}")
    rng = np.random.default_rng(rng)
    n = correct[0].shape[1]
    for c, m in enumerate(correct):
        if m.ndim != 2 or m.shape[1] != n or m.shape[0] < 1:
            raise ValueError(
                f"cell {c}: correctness has shape {m.shape}, expected (seeds >= 1, {n})"
            )
    if n < 1:
        raise ValueError("bootstrap needs at least one test image")
    # Images with the same number of correct seeds in every cell are interchangeable:
    # resampling n images is drawing how often each such pattern comes up
    # (multinomial), which costs reps x patterns draws instead of reps x images.
    hits = np.column_stack([m.sum(axis=0) for m in correct])  # (images, cells)
    patterns, sizes = np.unique(hits, axis=0, return_counts=True)
    counts = rng.multinomial(n, sizes / sizes.sum(), size=reps).astype(np.float64)
    seeds = np.array([m.shape[0] for m in correct])
    per_seed = [m.mean(axis=1, dtype=np.float64) for m in correct]
    means = np.array([p.mean() for p in per_seed])
    effects = patterns / seeds - means  # image effects of each pattern, (patterns, cells)
    run_noise = np.array(
        [m.var(axis=0, ddof=1, dtype=np.float64).mean() / s if s > 1 else 0.0
         for m, s in zip(correct, seeds, strict=True)]
    )  # fmt: skip
    image_part = counts @ (effects @ _denoise(effects, sizes / n, run_noise)) / n
    out = np.empty((reps, len(correct)))
    for c, (values, s) in enumerate(zip(per_seed, seeds, strict=True)):
        picks = rng.integers(0, s, size=(reps, s))
        scale = math.sqrt(s / (s - 1)) if s > 1 else 0.0
        out[:, c] = means[c] + scale * (values[picks].mean(axis=1) - means[c]) + image_part[:, c]
    seed_var = np.array([v.var(ddof=1) / len(v) if len(v) > 1 else 0.0 for v in per_seed])
    return Replicates(out, means, seed_var, seeds)


def _denoise(effects: np.ndarray, weights: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """The matrix M that gives the image effects ``effects @ M`` the covariance
    ``C - diag(noise)`` (C: their covariance over images, ``weights`` the share of
    images of each row; negative eigenvalues clipped to 0): the run-by-image
    noise that the seed level already carries is taken out of the image level,
    for every cell and every pair of cells (their covariance is left as it is).
    """
    cov = (effects * weights[:, None]).T @ effects
    values, vectors = np.linalg.eigh(cov)
    tol = max(values.max(initial=0.0), 0.0) * 1e-10
    inverse = np.where(values > tol, 1 / np.sqrt(np.where(values > tol, values, 1)), 0.0)
    inv_sqrt = (vectors * inverse) @ vectors.T
    target, basis = np.linalg.eigh(cov - np.diag(noise))
    sqrt = (basis * np.sqrt(np.clip(target, 0, None))) @ basis.T
    return inv_sqrt @ sqrt


def interval(
    replicates: Replicates, a: int, b: int | None = None, level: float = LEVEL
) -> tuple[float, float]:
    """The ``level`` interval of cell ``a``'s accuracy, or of ``a - b``.

    The percentile interval of the replicates, widened about the observed value
    by ``t(df) / z`` (Welch-Satterthwaite): the seed level of a cell with S
    seeds estimates its variance from S values (S - 1 degrees of freedom), which
    a percentile interval alone ignores (with three seeds it would cover 85-90 %
    instead of 95 % when seed-to-seed variation dominates). ``df`` =
    ``V² / sum(v_c² / (S_c - 1))``, ``V`` the replicates' variance, ``v_c`` the
    seed-level variance of each cell (``Replicates.seed_var``); no widening
    when no cell has two seeds. With two seeds (1 degree of freedom) the factor
    is 6.5: two runs say little about seed-to-seed variation. The interval is
    clipped to [0, 1] for an accuracy, [-1, 1] for a difference.
    """
    if not 0 < level < 1:
        raise ValueError(f"interval level must be in (0, 1), got {level}")
    weights = np.zeros(len(replicates.point))
    weights[a] += 1.0
    if b is not None:
        weights[b] -= 1.0
    values = replicates.values @ weights
    point = float(replicates.point @ weights)
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    parts = (weights**2 * replicates.seed_var)[replicates.seeds > 1]
    dof = replicates.seeds[replicates.seeds > 1] - 1
    spread = float(np.sum(parts**2 / dof)) if len(parts) else 0.0
    df = float(values.var()) ** 2 / spread if spread > 0 else math.inf
    q = (1 + level) / 2
    factor = float(stats.t.ppf(q, df) / stats.norm.ppf(q)) if math.isfinite(df) else 1.0
    bound = 1.0  # an accuracy lies in [0, 1], a difference of two in [-1, 1]
    low, high = point - factor * (point - float(low)), point + factor * (float(high) - point)
    return max(low, 0.0 if b is None else -bound), min(high, bound)


def compare(low: float, high: float, margin: float = MARGIN) -> tuple[str, bool]:
    """``(verdict, equivalent)`` of A against B from the interval [low, high] of A - B.

    ``equivalent``: the interval lies inside [-margin, margin]. Verdict
    ``better`` (above 0, not equivalent), ``worse`` (below 0, not equivalent)
    or ``tied``.
    """
    if margin < 0:
        raise ValueError(f"verdict margin must be >= 0, got {margin}")
    equivalent = -margin <= low and high <= margin
    if low > 0 and not equivalent:
        return "better", False
    if high < 0 and not equivalent:
        return "worse", False
    return "tied", equivalent


def seeds_to_resolve(
    a: np.ndarray,
    b: np.ndarray,
    margin: float = MARGIN,
    alpha: float = ALPHA,
    power: float = POWER,
) -> float:
    """Seeds per cell that would resolve a true difference of ``margin`` between two cells.

    A normal power calculation, two-sided level ``alpha``, power ``power``:
    with ``k = z(1 - alpha/2) + z(power)`` (2.80 by default), the difference of
    two cells with n seeds each has variance ``(s_a² + s_b²) / n + v_test``,
    where ``s²`` is a cell's variance of test accuracy across seeds and
    ``v_test`` the part that more seeds cannot reduce, because it comes from
    the finite test set: the variance over images of the paired per-image
    difference (each cell's per-image accuracy over its seeds), less the
    run-by-image noise ``v_run / S`` of each cell, divided by the number of
    images. Resolving needs ``k² ((s_a² + s_b²) / n + v_test) <= margin²``, so
    ``n = ceil(k² (s_a² + s_b²) / (margin² - k² v_test))``.

    Returns ``inf`` when no number of seeds suffices (the test set is too small
    for the margin) and ``nan`` when a cell has fewer than two seeds (no
    estimate of seed variation).
    """
    if margin <= 0:
        raise ValueError(f"seeds_to_resolve needs a margin > 0, got {margin}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        return math.nan
    k = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    a, b = a.astype(np.float64), b.astype(np.float64)
    seed_var = a.mean(axis=1).var(ddof=1) + b.mean(axis=1).var(ddof=1)
    per_image = a.mean(axis=0) - b.mean(axis=0)
    run_noise = (
        a.var(axis=0, ddof=1).mean() / a.shape[0] + b.var(axis=0, ddof=1).mean() / b.shape[0]
    )
    test_var = max(0.0, per_image.var(ddof=1) - run_noise) / a.shape[1]
    room = margin**2 - k**2 * test_var
    if room <= 0:
        return math.inf
    return float(max(2, math.ceil(k**2 * seed_var / room)))
