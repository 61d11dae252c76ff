"""Learning curves over label budgets (tlbench.datasets.budget) and where they cross.

Per dataset, :func:`curve_table` gives every cell's accuracy (test; in a pilot
study validation) at every label budget: the mean over seeds and a 95 %
t-interval over seeds (``scipy.stats.t``: mean ± t(0.975, S - 1) · sd / sqrt(S);
a cell with one seed has none; clipped to [0, 1]): the band each curve is drawn
with. The x position of a budget is the mean number of training images per class
its runs used (``budget_per_class_mean`` of metrics.json), so ``all`` sits at the
class mean size.

Two cells are compared at a budget by the paired bootstrap of that budget's runs
(:func:`budget_comparisons`: the same test images for every cell, the intervals
simultaneous over the budget's pairs of cells, the four outcomes of
:mod:`tlbench.analysis.verdict.intervals`), not by whether two bands overlap
(overlapping t-intervals over three seeds say little about the difference). A
*crossover* (:func:`crossovers`) is a resolved difference that changes sign:
one cell is better at some budget and worse at another;
:func:`crossover_sentence` puts a pair's outcomes along the budgets into words.
Nothing here selects a setting: the cells' settings were chosen on validation by
each run (early stopping, best epoch).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from tlbench.analysis.verdict.bootstrap import MARGIN, REPS, SEED, bootstrap_cells, load_cells
from tlbench.analysis.verdict.intervals import BETTER, EQUIVALENT, WORSE, intervals, judge
from tlbench.datasets.budget import ALL

LEVEL = 0.95
CURVE_COLUMNS = [
    "dataset", "cell", "budget", "per_class", "seeds", "accuracy", "low", "high",
]  # fmt: skip


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Two-sided t-interval of the mean of ``values`` (NaN, NaN with fewer than 2)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return math.nan, math.nan
    mean, sem = float(values.mean()), float(stats.sem(values))
    if sem == 0.0:
        return mean, mean
    low, high = stats.t.interval(level, len(values) - 1, loc=mean, scale=sem)
    return float(low), float(high)


def curve_table(study: pd.DataFrame, split: str = "test", level: float = LEVEL) -> pd.DataFrame:
    """One row per (dataset, cell, budget) of the finished runs: ``per_class`` (mean
    training images per class used), ``seeds``, mean ``accuracy`` on ``split`` and its
    t-interval ``low``..``high``; sorted by dataset, cell, per_class."""
    column = f"{split}_accuracy"
    ok = study[study["status"] == "ok"].copy()
    if "budget" not in ok:
        ok["budget"] = ALL
    ok["budget"] = ok["budget"].fillna(ALL)
    if "budget_per_class_mean" not in ok or ok["budget_per_class_mean"].isna().any():
        missing = ok.loc[ok.get("budget_per_class_mean", pd.Series(np.nan, ok.index)).isna()]
        paths = ", ".join(map(str, missing.get("path", missing.index)[:3]))
        raise ValueError(
            f"runs without budget_per_class_mean in metrics.json (trained before label "
            f"budgets were recorded): {paths}; train them again"
        )
    ok["cell"] = ok["backbone"] + "/" + ok["strategy"] + "/" + ok["augmentation"]
    records = []
    for (dataset, cell, label), rows in ok.groupby(["dataset", "cell", "budget"], sort=True):
        values = rows[column].astype(float).to_numpy()
        low, high = np.clip(t_interval(values, level), 0.0, 1.0)  # an accuracy's range
        records.append(
            {
                "dataset": dataset,
                "cell": cell,
                "budget": label,
                "per_class": float(rows["budget_per_class_mean"].mean()),
                "seeds": len(values),
                "accuracy": float(values.mean()),
                "low": low,
                "high": high,
            }
        )
    table = pd.DataFrame(records, columns=CURVE_COLUMNS)
    return table.sort_values(["dataset", "cell", "per_class"], kind="stable").reset_index(drop=True)


def budget_comparisons(
    study: pd.DataFrame,
    margin: float = MARGIN,
    reps: int = REPS,
    seed: int = SEED,
    level: float = LEVEL,
) -> pd.DataFrame:
    """Every pair of cells of each dataset at each label budget: ``a``, ``b``,
    ``difference`` = a - b of test accuracy with ``low``..``high`` from the budget's
    paired bootstrap (simultaneous over the budget's pairs), ``outcome`` and
    ``reason`` (:func:`tlbench.analysis.verdict.intervals.judge`); one row per
    unordered pair (a before b in cell order), budgets in increasing ``per_class``."""
    ok = study[study["status"] == "ok"].copy()
    if "budget" not in ok:
        ok["budget"] = ALL
    ok["budget"] = ok["budget"].fillna(ALL)
    records = []
    for label, rows in ok.groupby("budget", sort=True):
        for dataset, cells in load_cells(rows).items():
            replicates = bootstrap_cells(cells, reps, seed)
            family = list(itertools.combinations(range(len(cells)), 2))
            bands = intervals(replicates, family, level)
            per_class = float(rows.loc[rows["dataset"] == dataset, "budget_per_class_mean"].mean())
            for k, (i, j) in enumerate(family):
                low, high = float(bands["low"].iloc[k]), float(bands["high"].iloc[k])
                outcome, reason = judge(replicates, i, j, low, high, margin)
                records.append(
                    {"dataset": dataset, "budget": str(label), "per_class": per_class,
                     "a": cells[i].name, "b": cells[j].name,
                     "difference": float(bands["point"].iloc[k]), "low": low, "high": high,
                     "outcome": outcome, "reason": reason, "family": len(family)}
                )  # fmt: skip
    columns = ["dataset", "budget", "per_class", "a", "b", "difference", "low", "high",
               "outcome", "reason", "family"]  # fmt: skip
    table = pd.DataFrame(records, columns=columns)
    return table.sort_values(["dataset", "per_class"], kind="stable").reset_index(drop=True)


def relations(comparisons: pd.DataFrame, a: str, b: str) -> list[tuple[str, float, str]]:
    """``(budget, per_class, outcome)`` of cell ``a`` against cell ``b`` at every budget
    both were run at (:func:`budget_comparisons`), in increasing ``per_class``."""
    flip = {BETTER: WORSE, WORSE: BETTER}
    out = []
    for row in comparisons.sort_values("per_class", kind="stable").itertuples(index=False):
        if (row.a, row.b) == (a, b):
            out.append((str(row.budget), float(row.per_class), str(row.outcome)))
        elif (row.a, row.b) == (b, a):
            out.append((str(row.budget), float(row.per_class), flip.get(row.outcome, row.outcome)))
    return out


def crosses(points: Sequence[tuple[str, float, str]]) -> bool:
    """Whether a resolved difference changes sign: better at one budget, worse at another."""
    said = {relation for _, _, relation in points}
    return BETTER in said and WORSE in said


def budget_words(label: str, per_class: float | None = None) -> str:
    """A budget in words: ``10 images per class``, ``25 % of each class``, ``'all'``."""
    if label == ALL:
        return "'all'" if per_class is None else f"'all' ({per_class:.0f} per class)"
    if label.startswith("n"):
        return f"{int(label[1:])} images per class"
    return f"{100 * float(label[1:]):g} % of each class"


def phases(points: Sequence[tuple[str, float, str]]) -> list[tuple[str, str, str]]:
    """Runs of equal relation: ``(relation, first budget, last budget)``."""
    out: list[list[str]] = []
    for label, _, relation in points:
        if out and out[-1][0] == relation:
            out[-1][2] = label
        else:
            out.append([relation, label, label])
    return [tuple(p) for p in out]  # type: ignore[misc]


def crossover_sentence(name_a: str, name_b: str, points: Sequence[tuple[str, float, str]]) -> str:
    """The relation of two cells along the budgets in words (see the module docstring)."""
    runs = phases(points)
    if not runs:
        return f"{name_a} and {name_b} have no budget with an interval for both."

    def verb(relation: str, first: bool) -> str:
        if relation == BETTER:
            return f"{name_a} beats {name_b}"
        if relation == WORSE:
            return f"{name_b} beats {name_a}"
        if relation == EQUIVALENT:
            return f"{name_a} and {name_b} are equivalent" if first else "they are equivalent"
        return (
            f"the data cannot tell {name_a} from {name_b}"
            if first
            else "the data cannot tell them apart"
        )

    if len(runs) == 1:
        return f"{verb(runs[0][0], True)} at every budget."
    parts = []
    for index, (relation, first, last) in enumerate(runs):
        if index == 0:
            parts.append(f"{verb(relation, True)} up to {budget_words(last)}")
        elif index == len(runs) - 1:
            parts.append(f"from {budget_words(first)} on {verb(relation, False)}")
        elif first == last:
            parts.append(f"at {budget_words(first)} {verb(relation, False)}")
        else:
            parts.append(
                f"from {budget_words(first)} to {budget_words(last)} {verb(relation, False)}"
            )
    return "; ".join(parts) + "."


def short_names(cells: Sequence[str]) -> dict[str, str]:
    """Cell names without the parts (backbone, strategy, augmentation) all cells share."""
    parts = [cell.split("/") for cell in cells]
    keep = [i for i in range(3) if len({p[i] for p in parts}) > 1] or [1]
    names = {cell: "/".join(p[i] for i in keep) for cell, p in zip(cells, parts, strict=True)}
    return names if len(set(names.values())) == len(names) else {c: c for c in cells}


def crossovers(comparisons: pd.DataFrame) -> list[str]:
    """Sentences for every pair of one dataset's cells with a crossover (:func:`crosses`),
    from :func:`budget_comparisons`; the cell that wins the smallest budget it is told
    apart at is named first."""
    cells = list(dict.fromkeys([*comparisons["a"], *comparisons["b"]]))
    names = short_names(cells)
    out = []
    for a, b in itertools.combinations(cells, 2):
        points = relations(comparisons, a, b)
        if not crosses(points):
            continue
        first = next(r for _, _, r in points if r in (BETTER, WORSE))
        if first == WORSE:  # name the winner of the small budgets first
            a, b = b, a
            points = relations(comparisons, a, b)
        out.append(crossover_sentence(names[a], names[b], points))
    return out
