"""One dataset's answer (:func:`answer`): the cell chosen by validation, whether
validation could choose, the cells equivalent to it or not told apart from it, the
transfer gain and the cheapest cell shown to be as good; computed here, worded by
:mod:`tlbench.report.pages.verdict`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from tlbench.analysis.selection import select_cell
from tlbench.analysis.verdict.bootstrap import POOLED, Replicates
from tlbench.analysis.verdict.intervals import (
    BETTER,
    EQUIVALENT,
    INCONCLUSIVE,
    WORSE,
    intervals,
    judge,
)

#: ``verdict.cost``: what "cheapest" means -> (the cell table's column, its unit in words).
#: The default, ``flops_seen``, is forward FLOPs per image x training images seen
#: (:mod:`tlbench.training.cost`): a property of the cell, not of the machine that ran it.
COSTS = {
    "flops_seen": ("flops_seen", "FLOPs (forward FLOPs per image x training images seen)"),
    "train_seconds": ("train_seconds", "s of training"),
    "flops": ("forward_flops", "forward FLOPs per image"),
    "params": ("params_total", "parameters"),
}
DEFAULT_COST = "flops_seen"
#: The study table's cost columns a cell's mean is taken of (:func:`cell_costs`).
COST_COLUMNS = ("train_seconds", "forward_flops", "params_total", "flops_seen", "peak_rss_mb")


def cost_column(cost: str) -> str:
    """The cell table's column of ``verdict.cost`` value ``cost`` (an error names it)."""
    if cost not in COSTS:
        raise ValueError(f"verdict.cost: {cost!r} is not a cost; valid: {', '.join(COSTS)}")
    return COSTS[cost][0]


def cell_costs(rows: pd.DataFrame) -> dict[str, float]:
    """A cell's mean of each cost column over its runs (NaN where its runs did not record
    it: runs from before the cost fields)."""
    return {
        column: float(pd.to_numeric(rows[column], errors="coerce").mean())
        if column in rows
        else math.nan
        for column in COST_COLUMNS
    }


def _cheapest(pool: pd.DataFrame, cost: str) -> tuple[pd.Series | None, str]:
    """The cell of least ``cost`` in ``pool`` (the chosen cell first, ties to it), or
    None and why when a cell of the pool has no such cost recorded."""
    column = cost_column(cost)
    unknown = pool[pd.to_numeric(pool[column], errors="coerce").isna()]
    if len(unknown):
        cells = ", ".join(name(r) for _, r in unknown.iterrows())
        return None, f"no {cost} recorded for {cells}: no cheapest named"
    return pool.sort_values(column, kind="stable").iloc[0], ""


def name(row: Mapping[str, Any]) -> str:
    """``backbone/strategy/augmentation`` of a cell table's row."""
    return f"{row['backbone']}/{row['strategy']}/{row['augmentation']}"


def _listed(rows: pd.DataFrame, why: bool = False) -> str:
    """``name [low, high]`` of each row's difference to the chosen cell, ``; ``-joined;
    ``why``: with the reason it is inconclusive, or the seeds to resolve."""
    texts = []
    for _, row in rows.iterrows():
        text = f"{name(row)} [{row['diff_low']:+.4f}, {row['diff_high']:+.4f}]"
        if why and (row["reason"] or row["seeds_text"]):
            text += (
                f" ({row['reason']})"
                if row["reason"]
                else f" (seeds to resolve: {row['seeds_text']})"
            )
        texts.append(text)
    return "; ".join(texts)


def _validation(rows: pd.DataFrame, chosen: str) -> dict[str, Any]:
    """What validation could tell (:func:`tlbench.analysis.selection.select_cell` on the
    dataset's runs): its n, groups, standard error, warning and the cells it cannot
    tell from the chosen one."""
    selection = select_cell(rows)
    if selection.name != chosen:
        raise ValueError(
            f"validation chose {selection.name!r} in select_cell but {chosen!r} in the "
            "verdict's validation order: the two rules disagree"
        )
    return {
        "val_n": selection.val_n,
        "val_groups": selection.val_groups,
        "val_se": selection.standard_error,
        "val_warning": selection.warning or "",
        "val_close": "; ".join(selection.close),
    }


def answer(
    dataset: str,
    table: pd.DataFrame,
    replicates: Replicates,
    rows: pd.DataFrame,
    margin: float,
    level: float,
    cost: str = DEFAULT_COST,
) -> dict[str, Any]:
    """One dataset's verdict from its cell table (:func:`assess.dataset_cells`, the
    chosen cell first), their replicates and the dataset's finished runs ``rows``.

    * ``selected`` with ``test_accuracy``, the ``compared`` test quantity's ``test_value``
      and its ``ci_low``..``ci_high`` (differences and the gain are of it too); what validation
      could tell (``val_n``, ``val_groups``, ``val_se``, ``val_warning``, ``val_close``);
    * ``equivalent``: the cells equivalent to it, ``inconclusive``: those the data
      cannot tell from it (with why, or the seeds to resolve), ``better_on_test``:
      cells better on test though lower on validation (reported, never chosen),
      ``worse``: how many are worse; ``family``: the comparisons the simultaneous
      intervals cover;
    * transfer gain: ``best_pretrained`` minus ``best_scratch`` (each the
      validation-best cell with / without pretrained weights), ``transfer_gain``
      with ``gain_low``..``gain_high``, ``gain_verdict`` and ``gain_reason``; empty
      when one side is missing;
    * ``cheapest_as_good``: the cell of least mean ``cost`` (:data:`COSTS`; ``cost``,
      ``cost_unit``, ``cheapest_cost``) among the chosen one and the cells shown to be
      as good (equivalent, or non-inferior: lower bound >= -margin); ``as_good`` lists
      those cells, empty when none is (then there is no cheaper answer); none named,
      with ``cost_note`` saying why, when one of them has no such cost recorded;
    * how the intervals were made: ``units`` resampled out of ``images`` (groups
      when fewer), ``pooled``: the cells with the pooled seed variance.
    """
    best = table.iloc[0]
    others = table.iloc[1:]
    as_good = others[(others["verdict"] == EQUIVALENT) | others["non_inferior"].astype(bool)]
    cheapest, cost_note = _cheapest(pd.concat([table.iloc[:1], as_good]), cost)
    named = cheapest is not None and len(as_good) > 0
    pooled = [name(r) for _, r in table.iterrows() if r["seed_variance"] == "pooled"]
    record: dict[str, Any] = {
        "dataset": dataset,
        "criterion": best["criterion"],
        "selected": name(best),
        "seeds": int(best["seeds"]),
        "test_accuracy": best["test_accuracy"],
        "compared": best.get("compared", "accuracy"),
        "test_value": best.get("test_value", best["test_accuracy"]),
        "ci_low": best["ci_low"],
        "ci_high": best["ci_high"],
        **_validation(rows, name(best)),
        "equivalent": _listed(others[others["verdict"] == EQUIVALENT]),
        "inconclusive": _listed(others[others["verdict"] == INCONCLUSIVE], why=True),
        "better_on_test": "; ".join(
            name(r) for _, r in others.iterrows() if r["verdict"] == BETTER
        ),  # fmt: skip
        "worse": int((others["verdict"] == WORSE).sum()),
        "family": len(others),
        "level": level,
        "best_pretrained": "",
        "best_scratch": "",
        "transfer_gain": math.nan,
        "gain_low": math.nan,
        "gain_high": math.nan,
        "gain_verdict": "",
        "gain_reason": "",
        "as_good": "; ".join(name(r) for _, r in as_good.iterrows()),
        "cost": cost,
        "cost_unit": COSTS[cost][1],
        "cheapest_as_good": name(cheapest) if named else "",
        "cheapest_cost": cheapest[cost_column(cost)] if named else math.nan,
        "cheapest_seconds": cheapest["train_seconds"] if named else math.nan,
        "cheapest_accuracy": cheapest["test_accuracy"] if named else math.nan,
        "cost_note": cost_note if len(as_good) else "",
        "units": replicates.units,
        "images": replicates.images,
        "pooled": "; ".join(pooled),
        "pooled_df": float(replicates.seed_df[replicates.source == POOLED].max(initial=0.0)),
        "margin": margin,
    }
    with_weights = np.flatnonzero(table["pretrained"].to_numpy() == True)  # noqa: E712
    without = np.flatnonzero(table["pretrained"].to_numpy() == False)  # noqa: E712
    if len(with_weights) and len(without):
        p, s = int(with_weights[0]), int(without[0])  # validation order: first is best
        values = table["test_value"] if "test_value" in table else table["test_accuracy"]
        gain = intervals(replicates, [(p, s)], level, simultaneous=False).iloc[0]
        verdict, reason = judge(replicates, p, s, gain["low"], gain["high"], margin)
        record.update(
            best_pretrained=name(table.iloc[p]),
            best_scratch=name(table.iloc[s]),
            transfer_gain=values.iloc[p] - values.iloc[s],
            gain_low=float(gain["low"]),
            gain_high=float(gain["high"]),
            gain_verdict=verdict,
            gain_reason=reason,
        )
    return record
