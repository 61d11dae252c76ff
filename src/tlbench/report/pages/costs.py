"""A cell's cost in words and table cells (:mod:`tlbench.training.cost`'s fields): the
results page's cells table and the verdict's budget answer."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from tlbench.analysis.tables import mean_sd
from tlbench.analysis.verdict.answer import COSTS, cost_column

#: The cells table's cost columns: heading -> (study column, scale, decimals)
#: (empty for runs recorded before the cost fields).
COST_CELLS = {
    "params (M)": ("params_total", 1e-6, 3),
    "trainable (M)": ("params_trainable", 1e-6, 3),
    "GFLOPs / image": ("forward_flops", 1e-9, 3),
    "TFLOPs seen": ("flops_seen", 1e-12, 3),
    "train images/s": ("train_images_per_second", 1.0, 1),
    "inference images/s": ("inference_images_per_second", 1.0, 1),
    "peak RSS (MB)": ("peak_rss_mb", 1.0, 0),
    "wall (s)": ("wall_seconds", 1.0, 1),
    "CPU (s)": ("cpu_seconds", 1.0, 1),
}


def cost_cells(group: pd.DataFrame) -> dict[str, str]:
    """A cell's cost, mean ± sd over its seeds, per :data:`COST_CELLS` column."""
    out = {}
    for heading, (column, scale, decimals) in COST_CELLS.items():
        values = pd.to_numeric(group[column], errors="coerce") if column in group else []
        out[heading] = mean_sd([v * scale for v in values], decimals)
    return out


#: The comparison table's cost columns (a cell's means over its seeds, as
#: :func:`tlbench.analysis.verdict.answer.cell_costs` gives them): heading -> (column,
#: scale, decimals).
CELL_COSTS = {
    **{heading: COST_CELLS[heading] for heading in ("params (M)", "GFLOPs / image", "TFLOPs seen")},
    "train (s)": ("train_seconds", 1.0, 1),
}


def cell_cost_cells(row: Mapping[str, Any]) -> dict[str, str]:
    """A cell's cost (means over its seeds) per :data:`CELL_COSTS` column; empty where its
    runs did not record it."""
    out = {}
    for heading, (column, scale, decimals) in CELL_COSTS.items():
        value = pd.to_numeric(row.get(column), errors="coerce")
        out[heading] = "" if pd.isna(value) else f"{value * scale:.{decimals}f}"
    return out


def cost_words(cost: str, value: float) -> str:
    """``value`` of ``verdict.cost`` ``cost`` with its unit: ``12.3 s of training``,
    ``3.1e+12 FLOPs (forward FLOPs per image x training images seen)``."""
    cost_column(cost)  # an unknown cost is an error naming it
    if value is None or not math.isfinite(float(value)):
        return f"{cost} not recorded"
    unit = COSTS[cost][1]
    if cost == "train_seconds":
        return f"{value:.0f} {unit}" if value >= 10 else f"{value:.1f} {unit}"
    if cost == "params":
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}"
