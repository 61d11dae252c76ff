"""Do the scores rank backbones as training does? Weighted Kendall tau between each score
and the measured accuracy, per dataset and strategy (:func:`tau_table`).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import DegenerateDataWarning, bootstrap, permutation_test, weightedtau

from tlbench.analysis.tables import is_pilot
from tlbench.analysis.transferability.scores import SCORES
from tlbench.datasets.budget import ALL as BUDGET_ALL

#: The measured accuracies the scores are checked against (mean over seeds).
ACCURACIES = ("val_accuracy", "test_accuracy")
#: Fewest backbones a rank correlation is computed over.
MIN_BACKBONES = 3
#: The interval on each weighted tau: a percentile bootstrap over backbones (score and
#: accuracy resampled in pairs), its confidence level, resamples and seed.
TAU_CONFIDENCE = 0.95
TAU_RESAMPLES = 999
TAU_SEED = 0


def weighted_tau(score: Any, accuracy: Any) -> float:
    """``scipy.stats.weightedtau`` (hyperbolic weights, both orders' ranks averaged)."""
    return float(weightedtau(score, accuracy).statistic)


def tau_p_value(score: Any, accuracy: Any) -> float:
    """Two-sided permutation p-value of the weighted tau against no relation
    (``scipy.stats.permutation_test``, the accuracies permuted across backbones: exact
    when there are at most :data:`TAU_RESAMPLES` orders, else that many drawn, seeded).
    A percentile bootstrap of a rank correlation over three or four backbones can be
    [1, 1]; this p-value says how often so good an order arises by chance."""
    fixed = np.asarray(score, float)
    result = permutation_test(
        (np.asarray(accuracy, float),),  # one sample: its n! orders against the scores
        lambda permuted: weighted_tau(fixed, permuted),
        permutation_type="pairings",
        vectorized=False,
        n_resamples=TAU_RESAMPLES,
        alternative="two-sided",
        random_state=TAU_SEED,
    )
    return float(result.pvalue)


def tau_interval(score: Any, accuracy: Any) -> tuple[float, float, int]:
    """The :data:`TAU_CONFIDENCE` percentile bootstrap interval of the weighted tau over
    the backbones (``scipy.stats.bootstrap``, paired, :data:`TAU_RESAMPLES` resamples,
    seeded), and how many resamples had an undefined tau (a constant score or accuracy
    drawn: left out of the percentiles). It says how much the ranking of these backbones
    pins tau down, not more: over three backbones in a perfect order it is [1, 1], as
    every resample with two distinct backbones is in that order too; read it with
    :func:`tau_p_value`."""
    score, accuracy = np.asarray(score, float), np.asarray(accuracy, float)
    with warnings.catch_warnings():
        # resamples of a constant score give NaN, which scipy's own interval warns of;
        # the percentiles are taken here over the defined draws, their count in the note
        warnings.simplefilter("ignore", DegenerateDataWarning)
        draws = bootstrap(
            (score, accuracy),
            weighted_tau,
            paired=True,
            vectorized=False,
            n_resamples=TAU_RESAMPLES,
            confidence_level=TAU_CONFIDENCE,
            method="percentile",
            random_state=TAU_SEED,
        ).bootstrap_distribution
    defined = draws[np.isfinite(draws)]
    if len(defined) == 0:
        return math.nan, math.nan, len(draws)
    tail = 100 * (1 - TAU_CONFIDENCE) / 2
    low, high = np.percentile(defined, [tail, 100 - tail])
    return float(low), float(high), int(len(draws) - len(defined))


def scores_table(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per scored (dataset, backbone, budget) from the per-pair JSON records
    (``budget``: the label budget the scores were computed on, ``all`` for records
    written before budgets were scored)."""
    rows = [json.loads(Path(p).read_text()) for p in paths]
    for row in rows:  # a budget's record: the mean over its seeds' subsets (cache.score_cache)
        row.pop("per_seed", None)  # each seed's figures stay in the record's file
        if "budget_seeds" in row:
            row["budget_seeds"] = " ".join(str(s) for s in row["budget_seeds"])
    return with_budget(pd.DataFrame(rows)).sort_values(KEYS).reset_index(drop=True)


#: What a score record (and a measured accuracy) is per.
KEYS = ["dataset", "backbone", "budget"]


def with_budget(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with a ``budget`` column (label budgets, tlbench.datasets.budget): missing
    or empty is ``all``, the whole training split."""
    budget = table["budget"] if "budget" in table else pd.Series(BUDGET_ALL, index=table.index)
    return table.assign(budget=budget.fillna(BUDGET_ALL).astype(str))


# --------------------------------------------------------------------------- the check


def measured_accuracy(study: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds of val and test accuracy of finished runs, per (dataset,
    backbone, budget, strategy, augmentation), with the number of runs. A budget's
    accuracies are compared with the scores computed on that budget's training images."""
    ok = with_budget(study[study["status"] == "ok"])
    keys = [*KEYS, "strategy", "augmentation"]
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
    seeds) across the scored backbones, per dataset, label budget (``budget``: scores
    and accuracies of the same training images) and (strategy, augmentation).

    ``tau_low``, ``tau_high``: its :func:`tau_interval` (bootstrap over backbones);
    ``tau_p``: its permutation p-value (:func:`tau_p_value`).
    ``weighted_tau`` is empty where it is undefined, and ``note`` says why: no
    backbone has the score (e.g. NCE, LEEP without source classifiers), fewer than
    :data:`MIN_BACKBONES` backbones, or a score or accuracy constant over them.
    Test-accuracy rows are a report of how well a score predicted; nothing is chosen
    by them (``note`` says so). A pilot study (``tlbench.analysis.tables.is_pilot``: its test
    splits sealed) has validation rows only.
    """

    columns = [
        "dataset",
        "budget",
        "strategy",
        "augmentation",
        "score",
        "accuracy",
        "backbones",
        "weighted_tau",
        "tau_low",
        "tau_high",
        "tau_p",
        "note",
    ]

    accuracies = ("val_accuracy",) if is_pilot(study) else ACCURACIES  # pilot: test sealed
    measured = measured_accuracy(study).merge(with_budget(scores), on=KEYS)
    rows = []
    for (dataset, budget, strategy, augmentation), group in measured.groupby(
        ["dataset", "budget", "strategy", "augmentation"], sort=True
    ):
        for score in [s for s in SCORES if s in group]:
            for accuracy in accuracies:
                pair = group[[score, accuracy]].dropna()
                n = len(pair)
                tau, low, high, p, notes = math.nan, math.nan, math.nan, math.nan, []
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
                    tau = weighted_tau(pair[score], pair[accuracy])
                    low, high, undefined = tau_interval(pair[score], pair[accuracy])
                    p = tau_p_value(pair[score], pair[accuracy])
                    if undefined:
                        notes.append(
                            f"interval: {undefined} of {TAU_RESAMPLES} resamples drew a "
                            "constant score or accuracy (left out)"
                        )
                if accuracy == "test_accuracy":
                    notes.append("test accuracy: reported only, nothing is chosen by it")
                rows.append(
                    [
                        dataset,
                        budget,
                        strategy,
                        augmentation,
                        score,
                        accuracy,
                        n,
                        tau,
                        low,
                        high,
                        p,
                        "; ".join(notes),
                    ]
                )
    return pd.DataFrame(rows, columns=columns)
