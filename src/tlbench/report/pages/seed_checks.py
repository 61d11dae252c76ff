"""A seed study's checks: each a claim of its seed report (a target accuracy, every
strategy above a floor, enough seeds, a wall time) measured on the study's runs, with
what chose the run it measures (`selected_by`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tlbench.analysis import selection
from tlbench.analysis.tables import ok_runs
from tlbench.report.pages.results import CELL, format_seconds

# --------------------------------------------------------------------------- checks and findings


@dataclass
class Check:
    """An acceptance check: what, the target, and a function measuring it.

    ``measure`` returns ``(measured text, met)``; a check that chooses a run or a
    cell returns ``(text, met, selection)`` (a :class:`tlbench.analysis.selection.Selection`,
    or None when nothing could be chosen) and has ``selected_by`` set: how it chose
    (``"validation"``) or why it names runs without choosing them.
    """

    what: str
    target: str
    measure: Callable[[pd.DataFrame, Mapping[str, Any]], tuple]
    selected_by: str | None = None


def cell_name(cell: Sequence[str] | None) -> str:
    return "none" if cell is None else "/".join(str(c) for c in cell[1:])


def chosen_value(df: pd.DataFrame, chosen: selection.Selection, column: str) -> float | None:
    """``column`` of the chosen run, or its mean over the chosen cell's finished runs."""
    runs = ok_runs(df)
    mask = np.ones(len(runs), dtype=bool)
    for key, value in zip(CELL, chosen.cell, strict=True):
        mask &= (runs[key] == value).to_numpy()
    if chosen.seed is not None:
        mask &= (runs["seed"] == chosen.seed).to_numpy()
    values = pd.to_numeric(runs.loc[mask, column], errors="coerce").dropna()
    return float(values.mean()) if len(values) else None


def _selected_check(kind: str, column: str, label: str, target: float, strategies) -> Check:
    def measure(df, extra):
        choose = selection.select_run if kind == "run" else selection.select_cell
        try:
            chosen = choose(df, strategies=strategies)
        except ValueError as error:
            return f"nothing to choose: {error}", False, None
        value = chosen_value(df, chosen, column)
        where = cell_name(chosen.cell) + (
            f", seed {chosen.seed}" if chosen.seed is not None else ", mean over seeds"
        )
        basis = (
            f"chosen by {'mean ' if kind == 'cell' and chosen.seeds > 1 else ''}"
            f"{chosen.label} {chosen.value:.4f}, validation n = {chosen.val_n}, "
            f"among {chosen.candidates}"
        )
        warning = f"; {chosen.warning}" if chosen.warning else ""
        if value is None:
            return f"test split sealed (pilot) ({where}; {basis}){warning}", False, chosen
        return f"{value:.4f} ({where}; {basis}){warning}", value >= target, chosen

    what = "run" if kind == "run" else "cell"
    mean = "" if kind == "run" else "mean "
    return Check(
        f"validation-selected {what}'s {mean}{label}", f">= {target}", measure, "validation"
    )


def selected_run_check(column: str, label: str, target: float, strategies=None) -> Check:
    """The ``column`` (a test figure) of the run chosen by validation
    (:func:`tlbench.analysis.selection.select_run`) reaches ``target``."""
    return _selected_check("run", column, label, target, strategies)


def selected_cell_check(column: str, label: str, target: float, strategies=None) -> Check:
    """The mean ``column`` (a test figure) over seeds of the cell chosen by validation
    (:func:`tlbench.analysis.selection.select_cell`) reaches ``target``."""
    return _selected_check("cell", column, label, target, strategies)


def every_run_check(target: float, strategies: Sequence[str]) -> Check:
    """Every finished run of the given strategies reaches ``target`` test accuracy."""

    def measure(df, extra):
        runs = ok_runs(df)
        runs = runs[runs["strategy_name"].isin(strategies)]
        failed = df[(df["status"] != "ok") & df["strategy_name"].isin(strategies)]
        if runs.empty:
            return "no runs", False
        if runs["test_accuracy"].isna().all():
            return "test split sealed (pilot study): no test accuracy", False
        worst = runs.loc[runs["test_accuracy"].idxmin()]
        present = sorted(set(runs["strategy_name"]))
        text = (
            f"lowest {float(worst['test_accuracy']):.4f} ({worst['strategy']}, seed {worst['seed']}); "
            f"strategies run: {', '.join(present)}"
        )
        missing = [s for s in strategies if s not in present]
        if missing:
            text += f"; not run: {', '.join(missing)}"
        if len(failed):
            text += f"; {len(failed)} failed runs"
        return text, float(worst["test_accuracy"]) >= target and not missing and not len(failed)

    return Check(
        "every run of every training strategy: test accuracy",
        f">= {target}",
        measure,
        "none: every run is checked, none chosen (the lowest is named)",
    )


def seeds_check(strategies: Sequence[str], minimum: int = 3) -> Check:
    """Each of ``strategies`` has at least ``minimum`` seeds in every cell."""

    def measure(df, extra):
        runs = ok_runs(df)
        runs = runs[runs["strategy_name"].isin(strategies)]
        counts = runs.groupby(CELL, sort=False)["seed"].nunique()
        present = set(runs["strategy_name"])
        missing = [s for s in strategies if s not in present]
        text = f"{len(counts)} cells, seeds per cell {int(counts.min()) if len(counts) else 0}"
        if missing:
            text += f"; not run: {', '.join(missing)}"
        return text, not missing and len(counts) > 0 and int(counts.min()) >= minimum

    return Check(f"{', '.join(strategies)} compared", f">= {minimum} seeds each", measure)


def wall_time_check(limit_minutes: float) -> Check:
    def measure(df, extra):
        seconds = extra["wall_time"]["seconds"]
        if seconds is None:
            return "not recorded", False
        return format_seconds(seconds), seconds <= limit_minutes * 60

    return Check("study wall time on 2 CPU cores", f"<= {limit_minutes:g} min", measure)


def present_check(what: str, predicate: Callable[[pd.DataFrame], bool]) -> Check:
    def measure(df, extra):
        ok = bool(predicate(ok_runs(df)))
        return ("reported below" if ok else "missing"), ok

    return Check(what, "reported", measure)


#: the strategies the seed studies' "every training strategy" checks ask for: those of the
#: seed reports' era that train the network by gradient steps (``direct`` trains nothing;
#: ``linear_probe`` fits a logistic regression on frozen features, in seconds). A fixed
#: list, not the registry: the methods added since (issue 32: lp_ft, l2_sp, bss, bitfit,
#: norm_only, surgical, lora) are compared in configs/measured/methods.yaml, and a new
#: registry entry must not turn a seed study's check into "not run".
TRAINING_STRATEGIES = (
    "autoencoder",
    "discriminative_lr",
    "feature_extraction",
    "fine_tune",
    "freeze_bottom",
    "scratch",
    "two_phase",
)
PRETRAINED_STRATEGIES = tuple(s for s in TRAINING_STRATEGIES if s not in ("scratch", "autoencoder"))
