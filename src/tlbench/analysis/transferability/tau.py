"""Do the scores rank backbones as training does? Weighted Kendall tau between each score
and the measured accuracy, per dataset and strategy (:func:`tau_table`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from scipy.stats import weightedtau

from tlbench.analysis.tables import is_pilot
from tlbench.analysis.transferability.scores import SCORES

#: The measured accuracies the scores are checked against (mean over seeds).
ACCURACIES = ("val_accuracy", "test_accuracy")
#: Fewest backbones a rank correlation is computed over.
MIN_BACKBONES = 3


def scores_table(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per scored (dataset, backbone) from the per-pair JSON records."""
    rows = [json.loads(Path(p).read_text()) for p in paths]
    return pd.DataFrame(rows).sort_values(["dataset", "backbone"]).reset_index(drop=True)


# --------------------------------------------------------------------------- the check


def measured_accuracy(study: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds of val and test accuracy of finished runs, per
    (dataset, backbone, strategy, augmentation), with the number of runs. With label
    budgets (tlbench.datasets.budget) only the runs on the whole training split (``all``): the
    scores are computed on it."""
    ok = study[study["status"] == "ok"]
    if "budget" in ok:
        ok = ok[ok["budget"].fillna("all") == "all"]
    keys = ["dataset", "backbone", "strategy", "augmentation"]
    return (
        ok.groupby(keys, sort=True)
        .agg(
            runs=("seed", "size"),
            val_accuracy=("val_accuracy", "mean"),
            test_accuracy=("test_accuracy", "mean"),
        )
        .reset_index()
    )


def _missing_note(score: str, missing: int, backbones: int) -> str:
    """The tau table's note on ``missing`` of ``backbones`` without ``score`` (NaN)."""
    why = "(the score table's note says why)"
    if missing == backbones:
        return f"undefined: none of the {backbones} backbone(s) has {score} {why}"
    verb = "has" if missing == 1 else "have"
    return f"{missing} of {backbones} backbones {verb} no {score} {why}"


def tau_table(scores: pd.DataFrame, study: pd.DataFrame) -> pd.DataFrame:
    """Weighted Kendall tau (``scipy.stats.weightedtau``, hyperbolic weights, the ranks
    of both orders averaged) of each score against each measured accuracy (mean over
    seeds) across the scored backbones, per dataset and (strategy, augmentation).

    ``weighted_tau`` is empty where it is undefined, and ``note`` says why: no
    backbone has the score (e.g. NCE, LEEP without source classifiers), fewer than
    :data:`MIN_BACKBONES` backbones, or a score or accuracy constant over them.
    Test-accuracy rows are a report of how well a score predicted; nothing is chosen
    by them (``note`` says so). A pilot study (``tlbench.analysis.tables.is_pilot``: its test
    splits sealed) has validation rows only.
    """

    columns = [
        "dataset",
        "strategy",
        "augmentation",
        "score",
        "accuracy",
        "backbones",
        "weighted_tau",
        "note",
    ]

    accuracies = ("val_accuracy",) if is_pilot(study) else ACCURACIES  # pilot: test sealed
    measured = measured_accuracy(study).merge(scores, on=["dataset", "backbone"])
    rows = []
    for (dataset, strategy, augmentation), group in measured.groupby(
        ["dataset", "strategy", "augmentation"], sort=True
    ):
        for score in [s for s in SCORES if s in group]:
            for accuracy in accuracies:
                pair = group[[score, accuracy]].dropna()
                n = len(pair)
                tau, notes = math.nan, []
                missing = int(group[score].isna().sum())
                if missing:
                    notes.append(_missing_note(score, missing, len(group)))
                if missing == len(group):
                    tau = math.nan  # undefined, and the note above says why
                elif n < MIN_BACKBONES:
                    notes.append(
                        f"undefined: {n} scored backbone(s) with this accuracy, "
                        f"a rank correlation needs >= {MIN_BACKBONES}"
                    )
                elif pair[score].nunique() == 1 or pair[accuracy].nunique() == 1:
                    what = score if pair[score].nunique() == 1 else accuracy
                    notes.append(f"undefined: {what} is the same for all {n} backbones")
                else:
                    tau = float(weightedtau(pair[score], pair[accuracy]).statistic)
                if accuracy == "test_accuracy":
                    notes.append("test accuracy: reported only, nothing is chosen by it")
                rows.append(
                    [dataset, strategy, augmentation, score, accuracy, n, tau, "; ".join(notes)]
                )
    return pd.DataFrame(rows, columns=columns)
