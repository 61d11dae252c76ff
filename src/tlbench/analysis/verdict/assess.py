"""Which differences are real: intervals, ties and a verdict per dataset.

A study's runs of one dataset all see the same test images
(``predictions.npz`` of every run holds the test labels and probabilities), so
two cells (backbone × strategy × augmentation) can be compared image by image.
This module turns the study table (:func:`tlbench.tables.collect_runs`) and
those predictions into

* :func:`cell_table` -- every cell of every dataset on one list, ordered by the
  validation rule (:func:`validation_order`), with its test accuracy, a 95 %
  interval, the difference to the validation-selected cell with its interval,
  the verdict *better* / *worse* / *tied* and, beside each tie, the seeds that
  would resolve a difference of the margin (:func:`seeds_to_resolve`);
* :func:`verdict_table` -- one row per dataset: the selected cell, the cells
  tied with it, the transfer gain and the cheapest tied cell ("the budget
  answer");
* :func:`across_datasets` / :func:`cd_diagram` -- with two or more datasets,
  Friedman's test over the datasets, Nemenyi's post-hoc test and the
  critical-difference diagram of Demšar (JMLR 2006), with scikit-posthocs.

The interval: a paired, hierarchical bootstrap (:func:`bootstrap`). Each
replicate resamples the test images once for all cells of the dataset (the
pairing: an image that is hard for one cell is hard for the others, and this
common part cancels in a difference) and, independently per cell, the cell's
seeds. Resampling both levels of such crossed data with replacement counts
the run-by-image noise twice and the seed variance (S - 1) / S times, so the
two levels get the corrections of the two-stage bootstrap (Davison & Hinkley,
*Bootstrap Methods and their Application*, 1997, sec. 2.4 and 3.8): the image
effects (each cell's per-image accuracy over its seeds, minus its mean) are
transformed so that their covariance over images loses ``v_run / S`` on each
cell's variance (``v_run``: the mean over images of the cell's variance across
seeds; the noise of independent runs, already in the seed level) and keeps the
covariances between cells (the pairing); a cell's seed deviations are scaled
by ``sqrt(S / (S - 1))``. The percentile interval of the replicates is
widened by a small-sample factor ``t(df) / z`` (Welch-Satterthwaite degrees of
freedom of the seed level, :func:`interval`): with three seeds the seed
variance is estimated from three values. tests/test_verdict.py measures the
coverage by simulation (95-97 % for equal cells whether the test set or the
seeds dominate the noise). A cell with one seed has no estimate of seed
variation: its interval reflects the test set only.

Verdict of cell A against cell B with margin m (``verdict.margin``):
*better* when the interval of A - B lies above 0 and is not inside [-m, m],
*worse* when it lies below 0 and is not inside [-m, m], *tied* otherwise,
i.e. when the interval contains 0 (not resolved) or lies inside [-m, m]
(practically equivalent; ``equivalent`` is then true).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from tlbench.core.atomic import atomic_file

#: Identity of a cell (a run without its seed).
CELL = ["dataset", "backbone", "strategy", "augmentation"]
#: Defaults of the study's ``verdict`` section (src/tlbench/schemas/config.schema.yaml).
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


def read_correct(run_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, correct)`` of one run: its test labels and whether the most
    probable class (``argmax`` of ``y_prob``) is the label, from ``predictions.npz``."""
    path = Path(run_dir) / "predictions.npz"
    if not path.is_file():
        raise FileNotFoundError(f"run has no test predictions: {path}")
    with np.load(path) as data:
        y_true, y_prob = np.asarray(data["y_true"]), np.asarray(data["y_prob"])
    if y_prob.ndim != 2 or len(y_prob) != len(y_true):
        raise ValueError(
            f"{path}: y_prob has shape {y_prob.shape}, expected ({len(y_true)}, classes)"
        )
    return y_true, np.argmax(y_prob, axis=1) == y_true


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


# --------------------------------------------------------------------------- selection


def validation_criterion(rows: pd.DataFrame) -> str:
    """The study column that chooses among a dataset's cells: ``val_roc_auc`` when
    every finished run has two classes and a validation ROC AUC, else ``val_accuracy``
    (:func:`tlbench.selection.criterion`: validation, never test)."""
    from tlbench.analysis.selection import criterion

    return criterion(rows)[0]


def validation_order(rows: pd.DataFrame) -> pd.DataFrame:
    """The cells of one dataset, best first, by mean validation figure over seeds.

    ``rows``: the dataset's finished runs (study table rows). Returns one row per
    cell with ``criterion`` (the column that chose, :func:`validation_criterion`),
    ``validation`` (its mean over seeds), ``val_loss`` and ``seeds``. Order:
    highest ``validation``; ties: lower mean validation loss, then the names.
    Test figures play no part.
    """
    column = validation_criterion(rows)
    table = (
        rows.groupby(CELL, sort=True)
        .agg(
            validation=(column, "mean"),
            val_loss=("val_loss", "mean"),
            seeds=("seed", "size"),
        )
        .reset_index()
    )
    table.insert(len(CELL), "criterion", column)
    table = table.sort_values(
        ["validation", "val_loss", *CELL[1:]],
        ascending=[False, True, True, True, True],
        na_position="last",
        kind="stable",
    )
    return table.reset_index(drop=True)


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


# --------------------------------------------------------------------------- tables


def _pretrained(rows: pd.DataFrame) -> bool | None:
    """Whether the cell's runs started from pretrained weights (``pretrained`` column)."""
    if "pretrained" not in rows:
        return None
    values = {str(v).strip().lower() for v in rows["pretrained"].dropna()}
    if values <= {"true", "1", "1.0"} and values:
        return True
    if values <= {"false", "0", "0.0"} and values:
        return False
    return None


def dataset_cells(
    cells: Sequence[Cell],
    margin: float = MARGIN,
    reps: int = REPS,
    seed: int = SEED,
    level: float = LEVEL,
) -> tuple[pd.DataFrame, Replicates]:
    """One dataset's cells in validation order with intervals and verdicts.

    Returns the table and the bootstrap replicates (cells in the table's
    order). The first row is the validation-selected cell; every other row
    compares with it (``difference`` = cell - selected).
    """
    rows = pd.concat([c.rows for c in cells])
    order = validation_order(rows)
    by_key = {c.key: c for c in cells}
    ordered = [by_key[tuple(map(str, k))] for k in order[CELL].itertuples(index=False)]
    replicates = bootstrap([c.correct for c in ordered], reps, seed)
    records = []
    for position, cell in enumerate(ordered):
        accuracy = float(cell.correct.mean())
        low, high = interval(replicates, position, level=level)
        record = {
            **dict(zip(CELL, cell.key, strict=True)),
            "rank": position + 1,
            "seeds": cell.correct.shape[0],
            "criterion": order["criterion"].iloc[position],
            "validation": order["validation"].iloc[position],
            "test_accuracy": accuracy,
            "ci_low": low,
            "ci_high": high,
            "train_seconds": float(cell.rows["train_seconds"].mean()),
            "pretrained": _pretrained(cell.rows),
        }
        if position == 0:
            record.update(difference=0.0, diff_low=0.0, diff_high=0.0, verdict="selected")
            record.update(equivalent=True, seeds_to_resolve=math.nan)
        else:
            d_low, d_high = interval(replicates, position, 0, level)
            verdict, equivalent = compare(d_low, d_high, margin)
            record.update(
                difference=accuracy - float(ordered[0].correct.mean()),
                diff_low=d_low,
                diff_high=d_high,
                verdict=verdict,
                equivalent=equivalent,
                seeds_to_resolve=seeds_to_resolve(cell.correct, ordered[0].correct, margin)
                if verdict == "tied"
                else math.nan,
            )
        records.append(record)
    return pd.DataFrame(records), replicates


def cell_table(
    study: pd.DataFrame,
    margin: float = MARGIN,
    reps: int = REPS,
    seed: int = SEED,
    level: float = LEVEL,
) -> pd.DataFrame:
    """Every cell of every dataset (:func:`dataset_cells`), datasets in name order; with
    label budgets (:func:`budget_groups`) per budget, a ``budget`` column after ``dataset``."""
    return assess(study, margin, reps, seed, level).cells


def _name(row: Mapping[str, Any]) -> str:
    return f"{row['backbone']}/{row['strategy']}/{row['augmentation']}"


def _seeds_text(value: float) -> str:
    """Seeds to resolve as text: a number, or why there is none."""
    if math.isnan(value):
        return "n/a (a cell has one seed)"
    if math.isinf(value):
        return "none suffice (test set too small for the margin)"
    return str(int(value))


def verdict_table(
    study: pd.DataFrame,
    margin: float = MARGIN,
    reps: int = REPS,
    seed: int = SEED,
    level: float = LEVEL,
) -> pd.DataFrame:
    """The verdict, one row per dataset.

    * ``selected``: the validation-selected cell, ``test_accuracy`` and its
      interval ``ci_low``..``ci_high``;
    * ``tied_with``: the cells tied with it (``name [low, high]`` of the
      difference, ``seeds to resolve: n`` beside unresolved ties);
      ``better_on_test``: cells whose test accuracy is better although their
      validation figure is lower (reported, never chosen);
    * transfer gain: ``best_pretrained`` minus ``best_scratch`` (each the
      validation-best cell with / without pretrained weights), ``transfer_gain``
      with ``gain_low``..``gain_high`` and ``gain_verdict``; empty when one side
      is missing;
    * ``cheapest_tied``: among the selected cell and the cells tied with it,
      the one with the lowest mean training time (``cheapest_seconds``).
    """
    records = []
    for dataset, cells in load_cells(study).items():
        table, replicates = dataset_cells(cells, margin, reps, seed, level)
        records.append(_verdict_row(dataset, table, replicates, margin, level))
    return pd.DataFrame(records)


def _verdict_row(
    dataset: str, table: pd.DataFrame, replicates: Replicates, margin: float, level: float
) -> dict[str, Any]:
    """One dataset's verdict (:func:`verdict_table`) from its :func:`dataset_cells`."""
    best = table.iloc[0]
    tied = table[table["verdict"] == "tied"]
    tied_text = []
    for _, row in tied.iterrows():
        text = f"{_name(row)} [{row['diff_low']:+.4f}, {row['diff_high']:+.4f}]"
        if row["equivalent"]:
            text += " (equivalent within the margin)"
        else:
            text += f" (seeds to resolve: {_seeds_text(row['seeds_to_resolve'])})"
        tied_text.append(text)
    better = [_name(row) for _, row in table[table["verdict"] == "better"].iterrows()]
    pool = pd.concat([table.iloc[:1], tied])
    cheapest = pool.sort_values("train_seconds", kind="stable").iloc[0]
    record = {
        "dataset": dataset,
        "criterion": best["criterion"],
        "selected": _name(best),
        "seeds": int(best["seeds"]),
        "test_accuracy": best["test_accuracy"],
        "ci_low": best["ci_low"],
        "ci_high": best["ci_high"],
        "tied_with": "; ".join(tied_text),
        "better_on_test": "; ".join(better),
        "best_pretrained": "",
        "best_scratch": "",
        "transfer_gain": math.nan,
        "gain_low": math.nan,
        "gain_high": math.nan,
        "gain_verdict": "",
        "cheapest_tied": _name(cheapest),
        "cheapest_seconds": cheapest["train_seconds"],
        "cheapest_accuracy": cheapest["test_accuracy"],
        "margin": margin,
    }
    with_weights = np.flatnonzero(table["pretrained"].to_numpy() == True)  # noqa: E712
    without = np.flatnonzero(table["pretrained"].to_numpy() == False)  # noqa: E712
    if len(with_weights) and len(without):
        p, s = int(with_weights[0]), int(without[0])  # validation order: first is best
        low, high = interval(replicates, p, s, level)
        record.update(
            best_pretrained=_name(table.iloc[p]),
            best_scratch=_name(table.iloc[s]),
            transfer_gain=table["test_accuracy"].iloc[p] - table["test_accuracy"].iloc[s],
            gain_low=low,
            gain_high=high,
            gain_verdict=compare(low, high, margin)[0],
        )
    return record


#: Each dataset's cells (in :func:`load_cells`' order) and their bootstrap replicates.
DatasetBootstraps = list[tuple[str, list[Cell], Replicates]]


def dataset_bootstraps(
    study: pd.DataFrame, reps: int = REPS, seed: int = SEED
) -> DatasetBootstraps:
    """One paired bootstrap (:func:`bootstrap`) per dataset over its cells in
    :func:`load_cells`' order: what :func:`pairwise_table` and :func:`batchnorm_table`
    read, computed once when a page needs both."""
    return [
        (dataset, cells, bootstrap([c.correct for c in cells], reps, seed))
        for dataset, cells in load_cells(study).items()
    ]


def pairwise_table(
    study: pd.DataFrame,
    margin: float = MARGIN,
    reps: int = REPS,
    seed: int = SEED,
    level: float = LEVEL,
    bootstraps: DatasetBootstraps | None = None,
) -> pd.DataFrame:
    """Every ordered pair of cells of each dataset: ``a`` and ``b``
    (``backbone/strategy/augmentation``), ``difference`` = a - b of mean test
    accuracy with its interval from the dataset's paired bootstrap and the verdict
    of a against b (:func:`compare`). For comparisons a page names (e.g. seed 001's
    second phases against the frozen model), not for choosing: the choice is
    :func:`validation_order`'s. ``bootstraps``: :func:`dataset_bootstraps` of the
    study, when already computed."""
    records = []
    for dataset, cells, replicates in bootstraps or dataset_bootstraps(study, reps, seed):
        for i, a in enumerate(cells):
            for j, b in enumerate(cells):
                if i == j:
                    continue
                low, high = interval(replicates, i, j, level)
                records.append(
                    {
                        "dataset": dataset,
                        "a": a.name,
                        "b": b.name,
                        "difference": float(a.correct.mean() - b.correct.mean()),
                        "diff_low": low,
                        "diff_high": high,
                        "verdict": compare(low, high, margin)[0],
                        "margin": margin,
                    }
                )
    return pd.DataFrame(records)


def batchnorm_table(
    study: pd.DataFrame,
    margin: float = MARGIN,
    reps: int = REPS,
    seed: int = SEED,
    level: float = LEVEL,
    bootstraps: DatasetBootstraps | None = None,
) -> pd.DataFrame:
    """BatchNorm frozen against trained, for cells that differ only in that policy.

    Two cells of a dataset form a pair when they share backbone, augmentation and
    strategy name (``strategy_name``: e.g. ``fine_tune`` and ``fine_tune_bn_train``
    of one backbone), one with ``batchnorm`` ``frozen`` and one with ``train``, and
    no other cell of that group has either policy (an ambiguous group is left out).
    Per pair: both cells' mean test accuracy and mean validation figure (the
    dataset's criterion), ``difference`` = frozen - train with its interval from
    the dataset's paired bootstrap (:func:`bootstrap`), the verdict of frozen
    against train (:func:`compare`) and both cells' mean training time. Empty (no
    rows) when the study has no such pair. ``bootstraps``: :func:`dataset_bootstraps`
    of the study, when already computed.
    """
    records = []
    for dataset, cells, replicates in bootstraps or dataset_bootstraps(study, reps, seed):
        groups: dict[tuple[str, str, str], dict[str, list[int]]] = {}
        for index, cell in enumerate(cells):
            first = cell.rows.iloc[0]
            group = (
                str(first["backbone"]),
                str(first["strategy_name"]),
                str(first["augmentation"]),
            )
            policy = str(first.get("batchnorm", ""))
            groups.setdefault(group, {}).setdefault(policy, []).append(index)
        pairs = [
            (g, p["frozen"][0], p["train"][0])
            for g, p in groups.items()
            if len(p.get("frozen", [])) == 1 and len(p.get("train", [])) == 1
        ]
        if not pairs:
            continue
        column = validation_criterion(pd.concat([c.rows for c in cells]))
        for (backbone, strategy, augmentation), f, t in pairs:
            low, high = interval(replicates, f, t, level)
            frozen, trained = cells[f], cells[t]
            records.append(
                {
                    "dataset": dataset,
                    "backbone": backbone,
                    "strategy_name": strategy,
                    "augmentation": augmentation,
                    "frozen": frozen.key[2],
                    "train": trained.key[2],
                    "seeds": f"{frozen.correct.shape[0]}/{trained.correct.shape[0]}",
                    "criterion": column,
                    "frozen_validation": float(frozen.rows[column].mean()),
                    "train_validation": float(trained.rows[column].mean()),
                    "frozen_accuracy": float(frozen.correct.mean()),
                    "train_accuracy": float(trained.correct.mean()),
                    "difference": float(frozen.correct.mean() - trained.correct.mean()),
                    "diff_low": low,
                    "diff_high": high,
                    "verdict": compare(low, high, margin)[0],
                    "frozen_seconds": float(frozen.rows["train_seconds"].mean()),
                    "train_seconds": float(trained.rows["train_seconds"].mean()),
                    "margin": margin,
                }
            )
    return pd.DataFrame(records)


def budget_groups(study: pd.DataFrame) -> list[tuple[str | None, pd.DataFrame]]:
    """The study split by label budget (tlbench.budget; column ``budget``), budgets in
    increasing images per class; ``[(None, study)]`` when it has one budget or none."""
    if "budget" not in study or study["budget"].fillna("all").nunique() <= 1:
        return [(None, study)]
    labels = study["budget"].fillna("all")
    size = study.get("budget_per_class_mean", pd.Series(0.0, index=study.index))
    order = size.groupby(labels).mean().sort_values(kind="stable").index
    return [(str(label), study[labels == label]) for label in order]


def verdict_by_budget(
    study: pd.DataFrame,
    margin: float = MARGIN,
    reps: int = REPS,
    seed: int = SEED,
    level: float = LEVEL,
) -> pd.DataFrame:
    """:func:`verdict_table` per label budget (a ``budget`` column after ``dataset``):
    the validation-selected cell and the transfer gain of every budget, each from that
    budget's runs only. A study without budgets gets :func:`verdict_table` itself."""
    return assess(study, margin, reps, seed, level).verdicts


@dataclass
class Assessment:
    """A study's cells and verdicts from one bootstrap per dataset (and budget)."""

    cells: pd.DataFrame  #: :func:`cell_table`: every cell, validation order per dataset
    verdicts: pd.DataFrame  #: :func:`verdict_by_budget`: one row per dataset (and budget)
    budget: str | None  #: the largest budget (normally ``all``), None without budgets

    def whole(self) -> pd.DataFrame:
        """The cells of the largest budget (all cells without budgets): what the
        comparison across datasets ranks."""
        if self.budget is None:
            return self.cells
        return self.cells[self.cells["budget"] == self.budget]


def assess(
    study: pd.DataFrame,
    margin: float = MARGIN,
    reps: int = REPS,
    seed: int = SEED,
    level: float = LEVEL,
) -> Assessment:
    """Every cell (:func:`dataset_cells`) and every verdict (:func:`_verdict_row`) of
    the study, per label budget (:func:`budget_groups`; a ``budget`` column after
    ``dataset``) and dataset, datasets in name order: one bootstrap for each dataset
    and budget serves its cells' intervals and its verdict's transfer gain."""
    cell_tables, verdicts = [], []
    groups = budget_groups(study)
    for label, rows in groups:
        for dataset, cells in load_cells(rows).items():
            table, replicates = dataset_cells(cells, margin, reps, seed, level)
            row = _verdict_row(dataset, table, replicates, margin, level)
            if label is not None:
                table.insert(1, "budget", label)
                row = {"dataset": row.pop("dataset"), "budget": label, **row}
            cell_tables.append(table)
            verdicts.append(row)
    if not cell_tables:
        raise ValueError("the study has no finished run: nothing to compare")
    cells = pd.concat(cell_tables, ignore_index=True)
    cells = cells.sort_values("dataset", kind="stable").reset_index(drop=True)
    table = pd.DataFrame(verdicts).sort_values("dataset", kind="stable").reset_index(drop=True)
    return Assessment(cells, table, groups[-1][0])


#: Columns of :func:`ranking` (the report's strategy ranking).
RANKING_COLUMNS = [
    "dataset", "rank", "backbone", "strategy", "augmentation", "seeds", "criterion",
    "validation", "test_accuracy", "ci_low", "ci_high", "difference", "diff_low", "diff_high",
    "verdict", "seeds_to_resolve", "train_seconds",
]  # fmt: skip


def ranking(cells: pd.DataFrame) -> pd.DataFrame:
    """The strategy ranking: :func:`cell_table`'s cells, one list per dataset in
    validation order (``rank`` 1 = the validation-selected cell), with the test
    accuracy's interval, the difference to the selected cell with its interval,
    the verdict and, for ties, the seeds to resolve as text."""
    table = cells.copy()
    table["seeds_to_resolve"] = [
        _seeds_text(n) if v == "tied" else ""
        for n, v in zip(table["seeds_to_resolve"], table["verdict"], strict=True)
    ]
    budget = ["budget"] if "budget" in table else []  # label budgets: a list per budget
    return table[RANKING_COLUMNS[:1] + budget + RANKING_COLUMNS[1:]].reset_index(drop=True)


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


def cd_diagram(result: AcrossDatasets, path: str | os.PathLike) -> Path:
    """The critical-difference diagram (scikit-posthocs) as a PNG, written atomically.

    Strategies are placed at their mean rank; a bar joins those Nemenyi's test
    does not tell apart at ``alpha``. The title gives Friedman's p-value.
    """
    import scikit_posthocs
    from matplotlib.figure import Figure

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


# --------------------------------------------------------------------------- front section


def front_section(verdicts: pd.DataFrame, across: AcrossDatasets | None = None) -> str:
    """The report's front section (reStructuredText): the verdict in sentences."""
    lines = ["Verdict", "-------", ""]
    for _, v in verdicts.iterrows():
        criterion = (
            "validation ROC AUC" if v["criterion"] == "val_roc_auc" else "validation accuracy"
        )
        at = f" at label budget {v['budget']}" if isinstance(v.get("budget"), str) else ""
        lines += [
            f"**{v['dataset']}**{at}: chosen by mean {criterion} over seeds: ``{v['selected']}``, "
            f"test accuracy {v['test_accuracy']:.4f} (95 % interval {v['ci_low']:.4f} to "
            f"{v['ci_high']:.4f}, {v['seeds']} seed{'s' if v['seeds'] != 1 else ''}).",
            "",
        ]
        if v["tied_with"]:
            lines += [f"* Tied with it (difference and interval): {v['tied_with']}.", ""]
        else:
            lines += ["* No other cell is tied with it.", ""]
        if v["better_on_test"]:
            lines += [
                f"* Better on test, though lower on validation: {v['better_on_test']} "
                "(validation chose; a test figure does not).",
                "",
            ]
        if v["best_pretrained"]:
            lines += [
                f"* Transfer gain: ``{v['best_pretrained']}`` (pretrained) minus "
                f"``{v['best_scratch']}`` (no pretrained weights) = {v['transfer_gain']:+.4f} "
                f"[{v['gain_low']:+.4f}, {v['gain_high']:+.4f}]: {v['gain_verdict']}.",
                "",
            ]
        lines += [
            f"* The budget answer: ``{v['cheapest_tied']}`` is the cheapest cell tied with the "
            f"chosen one ({v['cheapest_seconds']:.1f} s of training, test accuracy "
            f"{v['cheapest_accuracy']:.4f}).",
            "",
        ]
    margin = float(verdicts["margin"].iloc[0]) if len(verdicts) else MARGIN
    lines += [
        f"*Tied*: the 95 % interval of the difference contains 0 or lies within ±{margin:g} "
        "(the practical-equivalence margin, ``verdict.margin``). Intervals: paired hierarchical "
        "bootstrap over seeds and test images. Seeds to resolve: seeds per cell that would "
        "detect a difference of the margin with 80 % power (two-sided 5 %).",
        "",
    ]
    if across is not None:
        ranks = ", ".join(f"``{k}`` {r:.2f}" for k, r in across.ranks.items())
        lines += [
            f"**Across {len(across.scores)} datasets**: Friedman p = {across.p_value:.3g}; mean "
            f"ranks (1 = best) {ranks}; Nemenyi critical difference "
            f"{across.critical_difference:.2f} (see the critical-difference diagram).",
            "",
        ]
    return "\n".join(lines) + "\n"


def write_front_section(text: str, path: str | os.PathLike) -> Path:
    """Write the front section atomically."""
    path = Path(path)
    with atomic_file(path) as handle:
        handle.write(text)
    return path


def across_or_none(cells: pd.DataFrame) -> tuple[AcrossDatasets | None, str]:
    """:func:`across_datasets`, or ``None`` and the reason when the study cannot have it."""
    try:
        return across_datasets(cells), ""
    except ValueError as error:
        return None, str(error)


#: The front section of a pilot study (``pilot: true``: the test split is sealed).
PILOT_SECTION = (
    "Verdict\n-------\n\nPilot study: the test split is sealed, so there is no verdict "
    "on test accuracy. Run the study with ``pilot: false`` for the verdict: the cell "
    "chosen by validation, its test accuracy with a 95 % interval and the cells tied "
    "with it.\n"
)


def write_verdict(
    study: pd.DataFrame,
    table_stem: str | os.PathLike,
    ranking_stem: str | os.PathLike,
    front_path: str | os.PathLike,
    margin: float = MARGIN,
    reps: int = REPS,
    seed: int = SEED,
) -> pd.DataFrame:
    """Write the verdict table (``<table_stem>.csv/.md/.html``), the strategy ranking
    (``<ranking_stem>.*``, :func:`ranking`) and the report's front section
    (``front_path``, reStructuredText) from one :func:`assess`; return the verdicts.
    A pilot study (test split sealed) gets the ranking by validation figures
    (:func:`tlbench.tables.strategy_ranking`) and no verdict."""
    from tlbench.analysis import tables

    if tables.is_pilot(study):  # no test predictions: nothing to give a verdict on
        tables.write_table(pd.DataFrame(columns=["dataset", "selected", "note"]), table_stem)
        tables.write_table(tables.strategy_ranking(study), ranking_stem)
        write_front_section(PILOT_SECTION, front_path)
        return pd.DataFrame()
    result = assess(study, margin, reps, seed)
    across, _ = across_or_none(result.whole())  # budgets: their largest, normally 'all'
    tables.write_table(result.verdicts, table_stem)
    tables.write_table(ranking(result.cells), ranking_stem)
    write_front_section(front_section(result.verdicts, across), front_path)
    return result.verdicts


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
    from tlbench.report.figures.runs import _message_figure

    return _message_figure(path, "No comparison across datasets", [reason])
