"""Learning curves over label budgets (tlbench.datasets.budget) and where they cross.

Per dataset, :func:`curve_table` gives every cell's accuracy (test; in a pilot
study validation) at every label budget: the mean over seeds and a 95 %
t-interval over seeds (``scipy.stats.t``: mean ± t(0.975, S - 1) · sd / sqrt(S);
a cell with one seed has none; clipped to [0, 1]). The x position of a budget is the mean number of
training images per class its runs used (``budget_per_class_mean`` of
metrics.json), so ``all`` sits at the class mean size.

:func:`relations` compares two cells budget by budget: *better* where the
first's interval lies wholly above the second's, *worse* where below, *tied*
where they overlap. :func:`crossover_sentence` puts a change of that relation
into words ("two_phase beats scratch up to 100 images per class; from 'all' on
they are tied"); :func:`crossovers` states every pair of cells of a dataset whose
relation changes with the budget. Nothing here selects a setting: the cells'
settings were chosen on validation by each run (early stopping, best epoch).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from tlbench.datasets.budget import ALL

LEVEL = 0.95
CURVE_COLUMNS = [
    "dataset", "cell", "budget", "per_class", "seeds", "accuracy", "low", "high",
]  # fmt: skip
#: Relations of :func:`relations`.
BETTER, WORSE, TIED = "better", "worse", "tied"


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


def relations(a: pd.DataFrame, b: pd.DataFrame) -> list[tuple[str, float, str]]:
    """``(budget, per_class, relation)`` of cell ``a`` against cell ``b`` at every budget
    both have an interval at, in increasing ``per_class``: *better* (a's interval wholly
    above b's), *worse* (wholly below) or *tied* (they overlap)."""
    merged = a.merge(b, on="budget", suffixes=("_a", "_b"))
    merged = merged.dropna(subset=["low_a", "high_a", "low_b", "high_b"])
    merged = merged.sort_values("per_class_a", kind="stable")
    out = []
    for row in merged.itertuples(index=False):
        if row.low_a > row.high_b:
            relation = BETTER
        elif row.high_a < row.low_b:
            relation = WORSE
        else:
            relation = TIED
        out.append((str(row.budget), float(row.per_class_a), relation))
    return out


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
        return f"{name_a} and {name_b} are tied" if first else "they are tied"

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


def crossovers(curves: pd.DataFrame) -> list[str]:
    """Sentences for every pair of one dataset's cells whose relation changes with the
    budget (a crossover: one's interval starts or stops overlapping the other's)."""
    cells = list(dict.fromkeys(curves["cell"]))
    names = short_names(cells)
    out = []
    for a, b in itertools.combinations(cells, 2):
        points = relations(curves[curves["cell"] == a], curves[curves["cell"] == b])
        if len(phases(points)) > 1:
            first = phases(points)[0][0]
            if first == WORSE:  # name the winner of the small budgets first
                a, b = b, a
                points = relations(curves[curves["cell"] == a], curves[curves["cell"] == b])
            out.append(crossover_sentence(names[a], names[b], points))
    return out
