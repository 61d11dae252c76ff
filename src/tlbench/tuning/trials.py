"""A search's trials: one row per trial (its values, status, score, epochs, seconds),
written as trials.csv and read back as a table.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping
from typing import Any

import pandas as pd

from tlbench.core.atomic import atomic_file

TRIAL_COLUMNS = ("trial", "status", "score", "epochs", "seconds")


def best_trial(done: list[dict[str, Any]]) -> dict[str, Any]:
    """The best completed trial among those trained with the largest epoch budget.

    Hyperband scores many trials after a fraction of the epochs; on a small
    validation split a lucky 2-epoch score would beat every fully trained
    trial, while the final runs train the full budget. Tuners without budgets
    give every trial the same one, so this is the plain best there.
    """
    top = max(r.get("budget_epochs") or 0 for r in done)
    return max((r for r in done if (r.get("budget_epochs") or 0) == top), key=lambda r: r["score"])


def trial_rows(oracle: Any, space: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per trial of ``oracle``: id, status, score, epochs, seconds, values."""
    rows = []
    for trial_id in sorted(oracle.trials, key=lambda t: (len(t), t)):
        trial = oracle.trials[trial_id]
        values = trial.hyperparameters.values
        row: dict[str, Any] = {
            "trial": trial_id,
            "status": str(getattr(trial.status, "value", trial.status)),
            "score": None if trial.score is None else float(trial.score),
        }
        for metric in ("epochs", "seconds"):
            history = trial.metrics.metrics.get(metric)
            row[metric] = None if history is None else history.get_last_value()
        for name in space:
            row[name] = values.get(name)
        row["budget_epochs"] = values.get("tuner/epochs")
        rows.append(row)
    return rows


def write_trials(rows: list[dict[str, Any]], names: list[str], path: str | os.PathLike) -> None:
    columns = [*TRIAL_COLUMNS, *names, "budget_epochs"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else row[c] for c in columns})
    with atomic_file(path) as handle:
        handle.write(out.getvalue())


# --------------------------------------------------------------------------- report


def read_trials(trials_csv: str | os.PathLike) -> Any:
    """The trials of a search (``trials.csv``) as a DataFrame."""

    return pd.read_csv(trials_csv, dtype={"trial": str})


def trials_table(trials_csv: str | os.PathLike) -> Any:
    """All trials of a search, best score first: hyperparameters, score, epochs, seconds."""
    df = read_trials(trials_csv)
    df = df.sort_values("score", ascending=False, na_position="last", kind="stable")
    df = df.reset_index(drop=True)
    scores = df["score"].to_numpy(dtype=float)
    if len(scores) and (scores == scores).any():
        df.attrs["best"] = {"score": [int(i) for i in (scores == max(scores)).nonzero()[0]]}
    return df
