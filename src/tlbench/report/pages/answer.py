"""The answer ``tlbench compare`` prints in the terminal, from the verdict rule's strategy
ranking (``tables/strategy_ranking.csv``: one row per cell, ``rank`` 1 = chosen by
validation, ``verdict`` of each other cell against it, ``train_seconds``).

Only structured columns are read: the chosen cell is ``rank`` 1; the cells shown as good as
it are those ``equivalent`` to it or non-inferior (``non_inferior``: the interval's lower
bound at or above -margin); the cells the data cannot tell from it (``inconclusive``) are
named apart and never counted as good; the cheapest is the one of least mean cost among the
chosen cell and those shown as good, by the verdict's ``cost`` (``verdict.cost``; training
seconds in a verdict table from before the option; :mod:`tlbench.analysis.verdict`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tlbench.analysis.criteria import WORDS
from tlbench.analysis.verdict.answer import cost_column
from tlbench.report.pages.costs import cost_words

EQUIVALENT, INCONCLUSIVE = "equivalent", "inconclusive"


def _cell(row: pd.Series) -> str:
    return f"{row['backbone']}/{row['strategy']}/{row['augmentation']}"


def _budget(label: str) -> str:
    """A budget's label (tlbench.datasets.budget.label: ``n10``, ``f0.25``, ``all``) in words."""
    text = str(label)
    if text.startswith("n") and text[1:].isdigit():
        return f"{text[1:]} labelled images per class"
    if text.startswith("f"):
        return f"{float(text[1:]):.0%} of the training images"
    return "all training images" if text == "all" else f"label budget {text}"


def _validation_line(verdict: pd.DataFrame | None, key: tuple) -> list[str]:
    """What validation could not tell, from the verdict table's row of ``key`` (dataset,
    or dataset and budget): the cells within 2 standard errors of the chosen one."""
    if verdict is None or "val_close" not in verdict:
        return []
    rows = verdict[verdict["dataset"].astype(str) == str(key[0])]
    if len(key) == 2 and "budget" in rows:
        rows = rows[rows["budget"].astype(str) == str(key[1])]
    close = rows["val_close"].iloc[0] if len(rows) else None
    if not isinstance(close, str) or not close:
        return []
    n, se = rows["val_n"].iloc[0], rows["val_se"].iloc[0]
    groups = rows["val_groups"].iloc[0] if "val_groups" in rows else None
    size = f"{groups:.0f} groups" if isinstance(groups, float) and groups == groups else f"{n:.0f}"
    return [
        f"  validation cannot tell it from (n = {size}, standard error {se:.3f}): "
        + ", ".join(close.split("; "))
    ]


def answer_text(
    ranking: pd.DataFrame, report: str | Path, verdict: pd.DataFrame | None = None
) -> str:
    """The answer per dataset (and label budget): chosen cell, what validation could not
    tell (from ``verdict``, the verdict table, when given), its test accuracy with its
    interval, the cells as good as it, the cheapest of those, and the report's path."""
    if "rank" not in ranking or "ci_low" not in ranking:
        return f"No verdict (a pilot study: the test split is sealed). Report: {report}"
    keys = ["dataset", "budget"] if "budget" in ranking else ["dataset"]
    cost = "train_seconds"
    if verdict is not None and "cost" in verdict and len(verdict):
        cost = str(verdict["cost"].iloc[0])
    column = cost_column(cost)
    lines = []
    for key, group in ranking.groupby(keys, sort=False):
        group = group.sort_values("rank")
        best = group.iloc[0]
        key = key if isinstance(key, tuple) else (key,)  # (dataset,) or (dataset, budget)
        where = f"{key[0]}, {_budget(key[1])}" if len(key) == 2 else str(key[0])
        others = group[group["rank"] != 1]
        compared = best.get("compared")  # the quantity compared; accuracy before it was named
        compared = compared if isinstance(compared, str) and compared in WORDS else "accuracy"
        value = "test_accuracy" if compared == "accuracy" else "test_value"
        shown = others["verdict"] == EQUIVALENT
        if "non_inferior" in others:
            shown |= others["non_inferior"].astype(str).str.lower() == "true"
        same = others[shown]
        unknown = others[(others["verdict"] == INCONCLUSIVE) & ~shown]
        pool = pd.concat([group.iloc[:1], same])
        cheapest = pool.sort_values(column, kind="stable").iloc[0]
        missing = pool[pd.to_numeric(pool[column], errors="coerce").isna()]
        names = ", ".join(_cell(row) for _, row in same.iterrows()) or "none"
        undecided = ", ".join(_cell(row) for _, row in unknown.iterrows()) or "none"
        lines += [
            f"{where}: chosen by validation: {_cell(best)}",
            *_validation_line(verdict, key),
            f"  test {WORDS[compared]} {best[value]:.3f} (95 % interval {best['ci_low']:.3f} "
            f"to {best['ci_high']:.3f}, {int(best['seeds'])} seed{'' if int(best['seeds']) == 1 else 's'})",
            f"  shown as good as it on test (equivalent or non-inferior): {names}",
            f"  not told apart from it (inconclusive: more seeds or test images): {undecided}",
            f"  cheapest of those: {_cell(cheapest)} ({cost_words(cost, cheapest[column])}, "
            f"test accuracy {cheapest['test_accuracy']:.3f})"
            if missing.empty
            else f"  cheapest of those: not named ({cost} not recorded for "
            f"{', '.join(_cell(r) for _, r in missing.iterrows())})",
        ]
    lines.append(f"report: {report}")
    return "\n".join(lines)
