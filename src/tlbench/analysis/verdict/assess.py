"""Which differences are real: intervals, the four outcomes and a verdict per dataset.

A study's runs of one dataset all see the same test images
(``predictions.npz`` of every run holds the test labels and probabilities), so
two cells (backbone × strategy × augmentation) can be compared image by image.
This module turns the study table (:func:`tlbench.analysis.runs.collect_runs`) and
those predictions into

* :func:`cell_table` -- every cell of every dataset on one list, ordered by the
  validation rule (:func:`validation_order`), with its test accuracy, a 95 %
  interval, the difference to the validation-selected cell with its interval,
  the outcome *better* / *worse* / *equivalent* / *inconclusive*
  (:mod:`tlbench.analysis.verdict.intervals`) and, beside each inconclusive one,
  the seeds that would resolve a difference of the margin
  (:func:`tlbench.analysis.verdict.power.seeds_to_resolve`, in words);
* :func:`verdict_table` -- one row per dataset (:mod:`tlbench.analysis.verdict.answer`):
  the selected cell, whether validation could choose it, the cells equivalent to
  it or not told from it, the transfer gain and the cheapest cell shown to be as
  good ("the budget answer").
* :func:`tlbench.analysis.verdict.across.across_datasets` -- with two or more
  datasets, each pair of strategies compared by baycomp's Bayesian signed-rank test
  (region of practical equivalence: the margin), no outcome with too few datasets.

The interval: a paired, hierarchical bootstrap (:func:`bootstrap`). Each
replicate resamples the test images once for all cells of the dataset (the
pairing: an image that is hard for one cell is hard for the others, and this
common part cancels in a difference) -- whole groups of images where the dataset
declares them (frames of one track), since images of a group are not independent
-- and adds, independently per cell, a draw of the cell's seed level: normal, with
the variance across its seeds of one run's accuracy divided by the seeds, pooled
over the dataset's cells when the cell has fewer than ``POOL_BELOW`` seeds
(:func:`seed_variances`). Resampling the images of such crossed data counts
the run-by-image noise in the image level as well, so the image effects (each
cell's per-image accuracy over its seeds, minus its mean, summed per group) are
transformed so that their covariance loses ``v_run / S`` on each cell's variance
(``v_run``: the mean over images of the cell's variance across seeds; the noise of
independent runs, already in the seed level; Davison & Hinkley, *Bootstrap Methods
and their Application*, 1997, sec. 2.4 and 3.8) and keeps the covariances between
cells (the pairing). The intervals of a family of differences hold together
(a simultaneous band, :func:`tlbench.analysis.verdict.intervals.intervals`) and are
widened to Student's t with the Welch-Satterthwaite degrees of freedom of the
seed level alone (the test images' part does not raise them). tests/test_verdict.py measures the coverage by simulation. A cell with
one seed of a stochastic strategy is never equivalent, better or worse.

What is compared (``compared``): test accuracy, unless the study's ``selection.metric``
is ``balanced_accuracy`` or ``macro_f1``: then that metric, whose replicates are
recomputed from the resampled images' true and predicted labels
(:func:`tlbench.analysis.verdict.bootstrap.bootstrap_labels`; no run-noise correction
of the image level: a little conservative), and the seeds to resolve, a power model of
accuracy, are not given. The pairwise and BatchNorm tables
(:mod:`tlbench.analysis.verdict.pairs`) and the learning curves compare accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from tlbench.analysis.selection import criterion
from tlbench.analysis.verdict import power
from tlbench.analysis.verdict.answer import DEFAULT_COST, answer, cell_costs
from tlbench.analysis.verdict.bootstrap import (
    CELL,
    LEVEL,
    MARGIN,
    POOLED,
    REPS,
    SEED,
    Cell,
    Replicates,
    bootstrap_cells,
    compared_metric,
    load_cells,
)
from tlbench.analysis.verdict.intervals import (
    INCONCLUSIVE,
    interval,
    intervals,
    judge,
    non_inferior,
)

#: ``verdict`` of the validation-selected cell in the cell table.
SELECTED = "selected"

# --------------------------------------------------------------------------- selection


def validation_criterion(rows: pd.DataFrame) -> str:
    """The study column that chooses among a dataset's cells: ``val_roc_auc`` when
    every finished run has two classes and a validation ROC AUC, else ``val_accuracy``
    (:func:`tlbench.analysis.selection.criterion`: validation, never test)."""

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
    """One dataset's cells in validation order with intervals and outcomes.

    Returns the table and the bootstrap replicates (cells in the table's
    order). ``compared``: the test quantity the intervals and differences are of
    (:func:`tlbench.analysis.verdict.bootstrap.compared_metric`: accuracy, or the
    balanced accuracy or macro-F1 of ``selection.metric``), ``test_value`` its value,
    ``test_accuracy`` the accuracy always. The first row is the validation-selected cell; every other row
    compares with it (``difference`` = cell - selected): ``diff_low``..``diff_high``
    hold simultaneously over the dataset's family of comparisons with the selected
    cell (``family``: their number), ``marginal_low``..``marginal_high`` is the
    difference's interval on its own; ``verdict`` one of the four outcomes
    (:func:`tlbench.analysis.verdict.intervals.judge`, ``reason`` when forced),
    ``non_inferior`` whether the lower bound is at least ``-margin``;
    ``seed_variance``: ``own`` or ``pooled`` (:func:`seed_variances`).
    """
    rows = pd.concat([c.rows for c in cells])
    order = validation_order(rows)
    by_key = {c.key: c for c in cells}
    ordered = [by_key[tuple(map(str, k))] for k in order[CELL].itertuples(index=False)]
    compared = compared_metric(rows)
    replicates = bootstrap_cells(ordered, reps, seed, compared)
    chosen = ordered[0].value(compared)
    contrasts = [(position, 0) for position in range(1, len(ordered))]
    family = intervals(replicates, contrasts, level)
    alone = intervals(replicates, contrasts, level, simultaneous=False)
    records = []
    for position, cell in enumerate(ordered):
        accuracy = float(cell.correct.mean())
        value = accuracy if compared == "accuracy" else cell.value(compared)
        low, high = interval(replicates, position, level=level)
        record = {
            **dict(zip(CELL, cell.key, strict=True)),
            "rank": position + 1,
            "seeds": cell.correct.shape[0],
            "criterion": order["criterion"].iloc[position],
            "validation": order["validation"].iloc[position],
            "test_accuracy": accuracy,
            "compared": compared,
            "test_value": value,
            "ci_low": low,
            "ci_high": high,
            **cell_costs(cell.rows),  # answer.COST_COLUMNS
            "pretrained": _pretrained(cell.rows),
            "seed_variance": "pooled" if replicates.source[position] == POOLED else "own",
            "family": len(contrasts),
        }
        if position == 0:
            record.update(difference=0.0, diff_low=0.0, diff_high=0.0, verdict=SELECTED)
            record.update(marginal_low=0.0, marginal_high=0.0, reason="")
            record.update(non_inferior=True, seeds_to_resolve=math.nan, seeds_text="")
        else:
            k = position - 1
            d_low, d_high = float(family["low"].iloc[k]), float(family["high"].iloc[k])
            verdict, reason = judge(replicates, position, 0, d_low, d_high, margin)
            needed = (  # the power model is of accuracy (per-image correctness)
                power.seeds_to_resolve([c.correct for c in ordered], position, 0, margin)
                if verdict == INCONCLUSIVE and compared == "accuracy"
                else None
            )
            record.update(
                difference=value - chosen,
                diff_low=d_low,
                diff_high=d_high,
                marginal_low=float(alone["low"].iloc[k]),
                marginal_high=float(alone["high"].iloc[k]),
                verdict=verdict,
                reason=reason,
                non_inferior=non_inferior(d_low, margin) and not reason,
                seeds_to_resolve=needed.n if needed else math.nan,
                seeds_text=power.seeds_text(needed) if needed else "",
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


def verdict_table(
    study: pd.DataFrame,
    margin: float = MARGIN,
    reps: int = REPS,
    seed: int = SEED,
    level: float = LEVEL,
    cost: str = DEFAULT_COST,
) -> pd.DataFrame:
    """The verdict, one row per dataset (:func:`tlbench.analysis.verdict.answer.answer`)."""
    records = []
    for dataset, cells in load_cells(study).items():
        table, replicates = dataset_cells(cells, margin, reps, seed, level)
        rows = pd.concat([c.rows for c in cells])
        records.append(answer(dataset, table, replicates, rows, margin, level, cost))
    return pd.DataFrame(records)


#: Each dataset's cells (in :func:`load_cells`' order) and their bootstrap replicates.
DatasetBootstraps = list[tuple[str, list[Cell], Replicates]]


def budget_groups(study: pd.DataFrame) -> list[tuple[str | None, pd.DataFrame]]:
    """The study split by label budget (tlbench.datasets.budget; column ``budget``), budgets in
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
    cost: str = DEFAULT_COST,
) -> pd.DataFrame:
    """:func:`verdict_table` per label budget (a ``budget`` column after ``dataset``):
    the validation-selected cell and the transfer gain of every budget, each from that
    budget's runs only. A study without budgets gets :func:`verdict_table` itself."""
    return assess(study, margin, reps, seed, level, cost).verdicts


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
    cost: str = DEFAULT_COST,
) -> Assessment:
    """Every cell (:func:`dataset_cells`) and every verdict (:func:`answer`) of
    the study, per label budget (:func:`budget_groups`; a ``budget`` column after
    ``dataset``) and dataset, datasets in name order: one bootstrap for each dataset
    and budget serves its cells' intervals and its verdict's transfer gain; the verdict's
    cheapest cell is the one of least ``cost`` (``verdict.cost``,
    :data:`tlbench.analysis.verdict.answer.COSTS`)."""
    cell_tables, verdicts = [], []
    groups = budget_groups(study)
    for label, rows in groups:
        for dataset, cells in load_cells(rows).items():
            table, replicates = dataset_cells(cells, margin, reps, seed, level)
            runs = pd.concat([c.rows for c in cells])
            row = answer(dataset, table, replicates, runs, margin, level, cost)
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
    "validation", "test_accuracy", "compared", "test_value", "ci_low", "ci_high", "difference",
    "diff_low", "diff_high",
    "verdict", "non_inferior", "reason", "family", "seed_variance", "seeds_to_resolve", "train_seconds",
    "forward_flops", "params_total", "flops_seen", "peak_rss_mb",
]  # fmt: skip


def ranking(cells: pd.DataFrame) -> pd.DataFrame:
    """The strategy ranking: :func:`cell_table`'s cells, one list per dataset in
    validation order (``rank`` 1 = the validation-selected cell), with the test
    accuracy's interval, the difference to the selected cell with its interval,
    the outcome (with why it was forced to inconclusive) and, for inconclusive
    differences, the seeds to resolve as text."""
    table = cells.copy()
    table["seeds_to_resolve"] = [
        text if v == INCONCLUSIVE else ""
        for text, v in zip(table["seeds_text"], table["verdict"], strict=True)
    ]
    budget = ["budget"] if "budget" in table else []  # label budgets: a list per budget
    return table[RANKING_COLUMNS[:1] + budget + RANKING_COLUMNS[1:]].reset_index(drop=True)
