"""The paired, hierarchical bootstrap of a dataset's cells (:func:`bootstrap`) with its
seed variances, own or pooled (:func:`seed_variances`); the seeds that would resolve a
difference are :mod:`tlbench.analysis.verdict.power`, its intervals and outcomes are
:mod:`tlbench.analysis.verdict.intervals`, the method is told in
:mod:`tlbench.analysis.verdict.assess`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse, stats

from tlbench.analysis.criteria import selection_metric
from tlbench.analysis.runs import read_groups, read_predicted
from tlbench.training.metrics import label_metrics

#: Identity of a cell (a run without its seed).
CELL = ["dataset", "backbone", "strategy", "augmentation"]
#: Defaults of the study's ``verdict`` section (src/tlbench/study/schemas/config.schema.yaml).
MARGIN = 0.01
REPS = 2000
SEED = 0
LEVEL = 0.95
#: A stochastic cell with fewer seeds borrows the seed variance pooled over its dataset's
#: cells (:func:`seed_variances`).
POOL_BELOW = 5
#: Seed variances are pooled only when Bartlett's test does not reject equal variances
#: across the dataset's cells at this level.
HOMOGENEITY = 0.10
#: ``Replicates.source`` of a cell whose seed variance is the pooled one.
POOLED = -1
#: The quantities the verdict compares on test: accuracy (``selection.metric`` auto,
#: accuracy or roc_auc), or the balanced accuracy or macro-F1 that chose.
COMPARED = ("accuracy", "balanced_accuracy", "macro_f1")
#: Bootstrap replicates of a recomputed metric drawn at a time (memory: this many x images).
CHUNK = 250


# --------------------------------------------------------------------------- reading runs


@dataclass
class Cell:
    """One cell of a dataset: its runs' test correctness and their study rows."""

    key: tuple[str, str, str, str]  #: (dataset, backbone, strategy, augmentation)
    correct: np.ndarray  #: (seeds, test images) bool: run s classified image i correctly
    rows: pd.DataFrame  #: the cell's finished runs (study table rows)
    groups: np.ndarray | None = None  #: the test images' group ids (None: independent)
    y_true: np.ndarray | None = None  #: (test images,) the test labels
    predicted: np.ndarray | None = None  #: (seeds, test images) the labels run s predicted

    @property
    def name(self) -> str:
        """``backbone/strategy/augmentation``."""
        return "/".join(self.key[1:])

    def value(self, metric: str = "accuracy") -> float:
        """The cell's test ``metric`` (:data:`COMPARED`): the mean over its seeds of each
        run's (scikit-learn's balanced accuracy and macro-F1,
        :func:`tlbench.training.metrics.label_metrics`)."""
        if metric == "accuracy":
            return float(self.correct.mean())
        if self.predicted is None or self.y_true is None:
            raise ValueError(f"cell {self.name}: no predicted labels to compute {metric} from")
        return float(np.mean([label_metrics(self.y_true, p)[metric] for p in self.predicted]))


def compared_metric(rows: pd.DataFrame) -> str:
    """What the verdict compares on test (:data:`COMPARED`) for a study table's rows:
    the balanced accuracy or macro-F1 of ``selection.metric``, else accuracy."""
    metric = selection_metric(rows)
    return metric if metric in COMPARED else "accuracy"


def load_cells(study: pd.DataFrame) -> dict[str, list[Cell]]:
    """The finished runs of the study table grouped into cells, per dataset.

    Every run of a dataset must have been evaluated on the same test images
    (same ``y_true``, and the same test groups where its dataset declares them,
    :func:`tlbench.analysis.runs.read_groups`); otherwise a ``ValueError`` names
    the two runs.
    """
    ok = study[study["status"] == "ok"]
    cells: dict[str, list[Cell]] = {}
    for dataset, runs in ok.groupby("dataset", sort=True):
        reference: tuple[Any, np.ndarray, np.ndarray | None] | None = None
        for key, rows in runs.groupby(CELL[1:], sort=True):
            rows = rows.sort_values("seed")
            predicted = []
            for path in rows["path"]:
                y_true, labels = read_predicted(path)
                groups = read_groups(path)
                if reference is None:
                    reference = (path, y_true, groups)
                elif not np.array_equal(y_true, reference[1]):
                    raise ValueError(
                        f"runs of dataset {dataset!r} were tested on different images: "
                        f"{path} and {reference[0]} have different y_true"
                    )
                elif (groups is None) != (reference[2] is None) or (
                    groups is not None and not np.array_equal(groups, reference[2])
                ):
                    raise ValueError(
                        f"runs of dataset {dataset!r} have different test groups: "
                        f"{path} and {reference[0]} (prepared from different data?)"
                    )
                predicted.append(labels)
            labels = np.vstack(predicted)
            cells.setdefault(str(dataset), []).append(
                Cell(
                    (str(dataset), *map(str, key)),
                    labels == reference[1],
                    rows,
                    reference[2],
                    reference[1],
                    labels,
                )
            )
    return cells


def bootstrap_cells(
    cells: Sequence[Cell], reps: int = REPS, seed: int = SEED, metric: str = "accuracy"
) -> Replicates:
    """:func:`bootstrap` of one dataset's cells' test accuracy, or
    :func:`bootstrap_labels` of their balanced accuracy or macro-F1 (``metric``),
    resampling their test groups when the dataset declares them."""
    if metric == "accuracy":
        return bootstrap([c.correct for c in cells], reps, seed, groups=cells[0].groups)
    return bootstrap_labels(
        cells[0].y_true, [c.predicted for c in cells], metric, reps, seed, groups=cells[0].groups
    )


# --------------------------------------------------------------------------- bootstrap


@dataclass
class Replicates:
    """Bootstrap replicates of the cells' test accuracies (:func:`bootstrap`)."""

    values: np.ndarray  #: (reps, cells)
    point: np.ndarray  #: (cells,) the observed accuracies (mean over seeds and images)
    seed_var: np.ndarray  #: (cells,) variance of the cell's mean from its seeds (s² / S)
    seed_df: np.ndarray  #: (cells,) degrees of freedom of ``seed_var`` (inf: known, 0: none)
    source: np.ndarray  #: (cells,) whose seed variance: the cell's own (its index) or POOLED
    seeds: np.ndarray  #: (cells,)
    stochastic: np.ndarray  #: (cells,) bool: another seed would give another run
    units: int  #: what the image level resamples: groups of images, or images
    images: int  #: test images

    def __getitem__(self, index: Any) -> np.ndarray:
        return self.values[index]

    @property
    def grouped(self) -> bool:
        """Whether the image level resamples groups (fewer units than images)."""
        return self.units < self.images


def seed_variances(
    per_seed: Sequence[np.ndarray],
    stochastic: Sequence[bool] | np.ndarray,
    pool_below: int = POOL_BELOW,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(variance, df, source)`` per cell of the seed-to-seed variance of one run's accuracy.

    ``per_seed``: per cell its runs' accuracies. A stochastic cell with at least
    ``pool_below`` seeds keeps its own sample variance (S - 1 degrees of freedom); one
    with fewer borrows the variance pooled over the stochastic cells with two seeds or
    more (degrees of freedom summed; ``source`` :data:`POOLED`), unless the cells' seed
    variances differ (Bartlett's test at :data:`HOMOGENEITY`, over the cells whose
    seeds did not all score alike) or its own is the larger: then it keeps its own (seed variation differs by
    cell: a scratch cell varies more than a frozen one; borrowing is never allowed to
    shrink a cell's variance). A one-seed cell borrows the pooled variance when there is one; else
    variance 0 with 0 degrees of freedom (nothing known: its intervals span the whole
    range, :func:`tlbench.analysis.verdict.intervals.welch_df`). A deterministic cell:
    0, known (inf degrees of freedom).
    """
    cells = len(per_seed)
    own = np.array([np.var(v, ddof=1) if len(v) > 1 else 0.0 for v in per_seed])
    dof = np.array([len(v) - 1 for v in per_seed], dtype=float)
    random = np.asarray(stochastic, dtype=bool)
    # cells whose seeds all scored alike (at chance, or perfect) say nothing about how
    # much seeds vary elsewhere: they neither feed the pool nor the test of alikeness
    varied = random & (dof > 0) & (own > 1e-12)  # not float noise of equal values
    pooled_df = float(dof[varied].sum())
    pooled = float((own * dof)[varied].sum() / pooled_df) if pooled_df else 0.0
    alike = _homogeneous([v for v, keep in zip(per_seed, varied, strict=True) if keep])
    variance, df, source = np.zeros(cells), np.zeros(cells), np.arange(cells)
    for c in range(cells):
        if not random[c]:
            df[c] = math.inf
            continue
        keep = dof[c] > 0 and (
            not alike or dof[c] + 1 >= pool_below or pooled_df <= dof[c] or own[c] > pooled
        )
        if keep:
            variance[c], df[c] = own[c], dof[c]
        elif pooled_df:
            variance[c], df[c], source[c] = pooled, pooled_df, POOLED
    return variance, df, source


def _homogeneous(per_seed: Sequence[np.ndarray]) -> bool:
    """Whether the cells' seed variances (each > 0) may be pooled: Bartlett's test does
    not reject equal variances at :data:`HOMOGENEITY`."""
    if len(per_seed) < 2:
        return True
    return bool(stats.bartlett(*per_seed).pvalue >= HOMOGENEITY)


def bootstrap(
    correct: Sequence[np.ndarray],
    reps: int = REPS,
    rng: np.random.Generator | int = SEED,
    *,
    groups: np.ndarray | Sequence[Any] | None = None,
    stochastic: Sequence[bool] | np.ndarray | None = None,
    pool_below: int = POOL_BELOW,
) -> Replicates:
    """Replicates of the test accuracy of each cell (``values``: ``(reps, cells)``).

    ``correct``: per cell a ``(seeds, images)`` bool array over the same test
    images (run s classified image i correctly). ``groups``: optional group id per
    image (e.g. the track of a traffic sign): the image level then resamples whole
    groups. ``stochastic``: per cell whether another seed gives another run (default
    all True). Each replicate draws the images (or groups) once for all cells
    (paired) and, per cell, a normal deviate of its seed level with the variance of
    :func:`seed_variances`; the image level is corrected as the module
    :mod:`tlbench.analysis.verdict.assess` describes. Vectorised: the draws are
    multinomial counts of the distinct per-unit patterns, then one matrix product.
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
    random = np.ones(len(correct), bool) if stochastic is None else np.asarray(stochastic, bool)
    if random.shape != (len(correct),):
        raise ValueError(f"stochastic has {random.size} flags for {len(correct)} cells")
    if groups is None:
        unit = np.arange(n)
    else:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(f"groups has shape {groups.shape}, expected ({n},): one per image")
        unit = np.unique(groups, return_inverse=True)[1].reshape(-1)
    units = int(unit.max()) + 1
    seeds = np.array([m.shape[0] for m in correct])
    per_seed = [m.mean(axis=1, dtype=np.float64) for m in correct]
    means = np.array([p.mean() for p in per_seed])
    hits = np.column_stack([m.sum(axis=0) for m in correct])  # (images, cells)
    # a unit's effect: the sum over its images of each cell's accuracy over seeds minus
    # the cell's mean; units with equal effects are interchangeable, so resampling the
    # units is drawing how often each distinct pattern comes up (multinomial)
    effects = np.zeros((units, len(correct)))
    np.add.at(effects, unit, hits / seeds - means)
    patterns, sizes = np.unique(effects, axis=0, return_counts=True)
    counts = rng.multinomial(units, sizes / units, size=reps).astype(np.float64)
    run_noise = np.array(
        [m.var(axis=0, ddof=1, dtype=np.float64).mean() / s if s > 1 else 0.0
         for m, s in zip(correct, seeds, strict=True)]
    )  # fmt: skip
    denoise = _denoise(patterns, sizes / units, run_noise * n / units)
    image_part = counts @ (patterns @ denoise) / n
    variance, df, source = seed_variances(per_seed, random, pool_below)
    seed_part = rng.standard_normal((reps, len(correct))) * np.sqrt(variance / seeds)
    return Replicates(
        means + seed_part + image_part,
        means,
        variance / seeds,
        df,
        source,
        seeds,
        random,
        units,
        n,
    )


def _denoise(effects: np.ndarray, weights: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """The matrix M that gives the unit effects ``effects @ M`` the covariance
    ``C - diag(noise)`` (C: their covariance over units, ``weights`` the share of
    units of each row; negative eigenvalues clipped to 0): the run-by-image
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


def from_counts(
    metric: str, true: np.ndarray, hits: np.ndarray, predicted: np.ndarray
) -> np.ndarray:
    """Balanced accuracy or macro-F1 from per-class counts (last axis: classes) of the
    true labels, the hits and the predicted labels, as scikit-learn defines them:
    recall averaged over the classes present in the labels; F1 over the classes in
    the labels or the predictions."""
    if metric == "balanced_accuracy":
        scores, counted = hits / np.maximum(true, 1e-12), true > 0
    elif metric == "macro_f1":
        both = true + predicted
        scores, counted = 2 * hits / np.maximum(both, 1e-12), both > 0
    else:
        raise ValueError(f"metric {metric!r}; recomputed metrics: balanced_accuracy, macro_f1")
    return (scores * counted).sum(axis=-1) / np.maximum(counted.sum(axis=-1), 1)


def bootstrap_labels(
    y_true: np.ndarray,
    predicted: Sequence[np.ndarray],
    metric: str,
    reps: int = REPS,
    rng: np.random.Generator | int = SEED,
    *,
    groups: np.ndarray | Sequence[Any] | None = None,
    stochastic: Sequence[bool] | np.ndarray | None = None,
    pool_below: int = POOL_BELOW,
) -> Replicates:
    """Replicates of each cell's test ``metric`` (balanced accuracy or macro-F1), which
    is not a mean of per-image scores: every replicate draws the test images (or
    groups) once for all cells (paired) and recomputes each run's metric from the
    drawn images' true and predicted labels (their confusion matrix, weighted by how
    often each image was drawn); the cell's value is the mean over its seeds, plus a
    normal draw of its seed level with the variance of :func:`seed_variances` of the
    runs' metrics. Unlike :func:`bootstrap` the image level keeps the run-by-image
    noise the seed level carries too: intervals of cells with several seeds are a
    little wider (conservative). ``predicted``: per cell ``(seeds, images)`` labels.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    n = len(y_true)
    if not predicted or n < 1 or reps < 1:
        raise ValueError("bootstrap_labels needs cells, test images and reps >= 1")
    for c, m in enumerate(predicted):
        if m.ndim != 2 or m.shape[1] != n or m.shape[0] < 1:
            raise ValueError(f"cell {c}: labels have shape {m.shape}, expected (seeds >= 1, {n})")
    rng = np.random.default_rng(rng)
    random = np.ones(len(predicted), bool) if stochastic is None else np.asarray(stochastic, bool)
    unit = (
        np.arange(n)
        if groups is None
        else np.unique(np.asarray(groups), return_inverse=True)[1].reshape(-1)
    )
    units = int(unit.max()) + 1
    k = int(max(y_true.max(), *(int(m.max()) for m in predicted))) + 1
    rows = np.arange(n)
    # per run: image -> its cell of the k x k confusion matrix (true row, predicted column)
    runs = [
        sparse.csr_matrix((np.ones(n), (rows, y_true * k + p)), shape=(n, k * k))
        for m in predicted
        for p in m
    ]
    per_seed = [np.array([label_metrics(y_true, p)[metric] for p in m]) for m in predicted]
    seeds = np.array([m.shape[0] for m in predicted])
    owner = np.repeat(np.arange(len(predicted)), seeds)
    values = np.zeros((reps, len(predicted)))
    for start in range(0, reps, CHUNK):
        size = min(CHUNK, reps - start)
        weights = rng.multinomial(units, np.full(units, 1 / units), size=size)[:, unit]
        for run, matrix in enumerate(runs):
            confusion = np.asarray((matrix.T @ weights.T).T).reshape(size, k, k)
            score = from_counts(
                metric,
                confusion.sum(axis=2),
                np.diagonal(confusion, axis1=1, axis2=2),
                confusion.sum(axis=1),
            )
            values[start : start + size, owner[run]] += score / seeds[owner[run]]
    variance, df, source = seed_variances(per_seed, random, pool_below)
    values += rng.standard_normal((reps, len(predicted))) * np.sqrt(variance / seeds)
    means = np.array([p.mean() for p in per_seed])
    return Replicates(values, means, variance / seeds, df, source, seeds, random, units, n)
