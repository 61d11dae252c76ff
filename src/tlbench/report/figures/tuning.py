"""The tuning figure: each trial's validation score in the order tried, best so far marked."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter

from tlbench.core.atomic import atomic_file
from tlbench.tuning.space import LOG_FLOATS
from tlbench.tuning.trials import TRIAL_COLUMNS, read_trials


def plot_trials(
    trials_csv: str | os.PathLike,
    png: str | os.PathLike,
    title: str = "",
    objective: str = "",
    space: Mapping[str, Any] | None = None,
) -> Path:
    """Validation score against each tuned hyperparameter (one panel each), as PNG.

    Learning rates on a log axis; block names in the order of the search
    space's list (``space``, e.g. ``best.json["tuning"]["space"]``; else in
    order of appearance); point colour: the trial's epoch budget (Hyperband)
    or epochs.
    """

    df = read_trials(trials_csv)
    names = [c for c in df.columns if c not in (*TRIAL_COLUMNS, "budget_epochs")]
    if not names:
        raise ValueError(f"{trials_csv}: no hyperparameter columns")
    done = df[df["status"] == "COMPLETED"]
    fig = Figure(figsize=(4.2 * len(names), 3.6))
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    budget = done["budget_epochs"] if done["budget_epochs"].notna().any() else done["epochs"]
    for ax, name in zip(axes, names, strict=True):
        x = done[name]
        numeric = pd.api.types.is_numeric_dtype(df[name])
        if not numeric:
            given = ((space or {}).get(name) or {}).get("blocks") or []
            order = list(dict.fromkeys([*map(str, given), *df[name].astype(str)]))
            x = x.astype(str).map(order.index)
            ax.set_xticks(range(len(order)), order, rotation=30, ha="right")
        points = ax.scatter(x, done["score"], c=budget, cmap="viridis", s=36, edgecolor="k")
        if name in LOG_FLOATS:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        label = {"unfreeze": "top layers", "frozen": "bottom layers"}.get(name)
        if label and not numeric:
            label = "from this block up" if name == "unfreeze" else "up to this block"
        ax.set_xlabel(f"{name} ({label})" if label else name)
        if ax is axes[0]:
            ax.set_ylabel(objective or "validation score")
        ax.grid(alpha=0.3)
    if len(done):
        bar = fig.colorbar(points, ax=list(axes), label="epochs of the trial")
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
    fig.suptitle(title or "tuning trials")
    png = Path(png)
    with atomic_file(png, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100, bbox_inches="tight")
    return png
