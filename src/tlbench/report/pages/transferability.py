"""The transferability part of a measured study's section: the scores beside the
accuracies, tau per strategy, the cost of scoring against training.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from tlbench.analysis.transferability.scores import SCORES, SOURCE_SCORES
from tlbench.analysis.transferability.tau import (
    KEYS,
    MIN_BACKBONES,
    TAU_CONFIDENCE,
    TAU_RESAMPLES,
    measured_accuracy,
    with_budget,
)
from tlbench.datasets.budget import ALL as BUDGET_ALL
from tlbench.report.pages.results import Block

#: Column labels of the scores on the page (tlbench.analysis.transferability.scores.SCORES' names).
SCORE_LABELS = {
    "logme": "LogME",
    "hscore": "H-score",
    "hscore_shrunk": "H-score (shrunk)",
    "knn_accuracy": "k-NN val acc",
    "nce": "NCE",
    "leep": "LEEP",
}
#: Strategy names in the page's column labels.
SHORT = {"feature_extraction": "FE", "linear_probe": "LP"}


def _short(strategy: str) -> str:
    return SHORT.get(strategy, strategy)


def _has_budgets(table: pd.DataFrame) -> bool:
    """Whether ``table`` has rows of a label budget other than ``all``."""
    return bool("budget" in table and (table["budget"] != BUDGET_ALL).any())


def _scores_present(scores: pd.DataFrame) -> list[str]:
    """The scores of :data:`tlbench.analysis.transferability.scores.SCORES` in the table, in that order."""

    return [s for s in SCORES if s in scores]


def scores_beside_accuracy(scores: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """One row per scored (dataset, backbone): its weights and input size, every score,
    and the mean validation / test accuracy of each strategy trained on it (augmentation
    ``none`` only when the study has others: the scores are of unaugmented features)."""

    measured = measured_accuracy(df)
    if measured["augmentation"].nunique() > 1 and (measured["augmentation"] == "none").any():
        measured = measured[measured["augmentation"] == "none"]
    scores = with_budget(scores)
    wide = measured.pivot_table(
        index=KEYS,
        columns="strategy",
        values=["val_accuracy", "test_accuracy"],
    )
    wide.columns = [
        f"{_short(strategy)} {'val' if kind == 'val_accuracy' else 'test'}"
        for kind, strategy in wide.columns
    ]
    wide = wide[sorted(wide.columns, key=lambda c: (c.split()[0], c.split()[1] != "val"))]
    present = _scores_present(scores)
    magnitude = ["feature_rms"] if "feature_rms" in scores else []
    budget = ["budget"] if _has_budgets(scores) else []
    columns = ["dataset", "backbone", *budget, "weights", "input_size", *magnitude, *present]
    wide = wide.reset_index()
    if not budget:  # every row is of the whole training split: no column for it
        wide = wide.drop(columns="budget")
    table = scores[columns].merge(wide, on=["dataset", "backbone", *budget], how="left")
    if magnitude:  # as text: 1e-17 would round to 0
        table["feature_rms"] = table["feature_rms"].map(lambda v: f"{v:.1e}")
    labels = {"input_size": "px", "feature_rms": "feature RMS", **SCORE_LABELS}
    return table.rename(columns=labels).round(3)


#: Features whose root-mean-square entry is below this are called tiny on the page.
TINY_FEATURES = 1e-6


def tiny_features_note(scores: pd.DataFrame) -> list[str]:
    """Paragraphs on backbones with tiny features (RMS below :data:`TINY_FEATURES`):
    what is scale-free and what is not. Empty when there are none (or no RMS recorded)."""
    if "feature_rms" not in scores:
        return []
    tiny = scores[scores["feature_rms"] < TINY_FEATURES]
    if tiny.empty:
        return []
    names = ", ".join(
        f"{b} ({v:.0e})" for b, v in tiny.groupby("backbone")["feature_rms"].median().items()
    )
    return [
        f"Tiny features: {names} (median RMS of the train features over the datasets). "
        "Activations shrink through the layers of a deep randomly initialised backbone. "
        "Every score here is invariant to the features' scale (LogME divides them by their "
        "RMS, the H-scores are ratios of covariances, k-NN normalises each row), and so is "
        "the linear probe, which standardises them; a feature_extraction head trains on "
        "the features as they are, with the study's initialisation and learning rate, and "
        "can stay at chance on them. (Before issue 35, LogME's divergence test was not "
        "scale-free and scored such features as the labels-only value, and k-NN fell back "
        "to Euclidean distances for rows of norm below 2e-15.)"
    ]


def _tau_cell(row: pd.Series) -> str:
    """``+0.73 [+0.20, +1.00]``: tau and its bootstrap interval; empty where undefined."""
    if math.isnan(row["weighted_tau"]):
        return ""
    low, high = row.get("tau_low", math.nan), row.get("tau_high", math.nan)
    interval = "" if math.isnan(low) else f" [{low:+.2f}, {high:+.2f}]"
    return f"{row['weighted_tau']:+.2f}{interval}"


def tau_pivot(tau: pd.DataFrame) -> pd.DataFrame:
    """Weighted Kendall tau (``tables/transferability_tau.csv``) with its 95 % bootstrap
    interval over backbones, as rows (dataset, strategy, accuracy) by columns (score);
    empty where undefined."""
    cells = tau.assign(cell=tau.apply(_tau_cell, axis=1))
    budget = ["budget"] if _has_budgets(tau) else []
    table = cells.pivot_table(
        index=["dataset", *budget, "strategy", "accuracy"],
        columns="score",
        values="cell",
        dropna=False,
        aggfunc="first",
    )
    order = [s for s in SCORE_LABELS if s in table.columns]
    table = table[order].rename(columns=SCORE_LABELS).reset_index()
    table["accuracy"] = table["accuracy"].str.replace("_accuracy", "", regex=False)
    return table.fillna("")


def tau_findings(tau: pd.DataFrame) -> list[str]:
    """Per score (and label budget, when there are several), in words: its weighted tau
    against each accuracy over the (dataset, strategy) pairs where it is defined (mean,
    range), and how many are positive or negative by their bootstrap interval
    (positive: the whole interval above 0); where it is undefined, why."""
    if _has_budgets(tau):
        return [
            f"At budget {budget}: {line}"
            for budget, rows in tau.groupby("budget", sort=True)
            for line in tau_findings(rows.assign(budget=BUDGET_ALL))
        ]
    lines = []
    for score, label in SCORE_LABELS.items():
        rows = tau[tau["score"] == score]
        if rows.empty:
            continue
        parts = []
        for accuracy in ("val_accuracy", "test_accuracy"):
            defined = rows[(rows["accuracy"] == accuracy) & rows["weighted_tau"].notna()]
            if defined.empty:
                continue
            values = defined["weighted_tau"]
            positive = int((defined["tau_low"] > 0).sum())
            negative = int((defined["tau_high"] < 0).sum())
            chance = int((defined["tau_p"] >= 0.05).sum())
            what = accuracy.replace("_accuracy", "")
            parts.append(
                f"against {what} accuracy mean {values.mean():+.2f} over {len(values)} "
                f"(dataset, strategy) pairs, from {values.min():+.2f} to {values.max():+.2f}; "
                f"{positive} of {len(values)} positive and {negative} negative "
                f"({TAU_CONFIDENCE:.0%} interval above or below 0), "
                f"{len(values) - positive - negative} "
                f"with an interval that includes 0; {chance} of {len(values)} with a "
                "permutation p-value of 0.05 or more (an order that chance gives as often)"
            )
        if parts:
            lines.append(f"{label}: weighted tau " + "; ".join(parts) + ".")
        else:
            notes = sorted({n.split(";")[0] for n in rows["note"].dropna() if n})
            lines.append(f"{label}: undefined on every pair ({'; '.join(notes) or 'no values'}).")
    return lines


def cost_table(scores: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """What scoring a backbone cost against training on its features: per score, the
    median seconds per scored (dataset, backbone), and the median training seconds of
    each strategy's runs on the same backbones (features cached for both) over it."""
    ok = df[(df["status"] == "ok") & df["backbone"].isin(set(scores["backbone"]))]
    training = {
        strategy: float(rows["train_seconds"].median())
        for strategy, rows in ok.groupby("strategy", sort=True)
    }

    rows = []
    for score in _scores_present(scores):
        column = f"{score}_seconds"
        if column not in scores:
            continue
        defined = scores[scores[score].notna()]
        cost = defined[column]
        if score in SOURCE_SCORES and "source_predict_seconds" in defined:
            cost = cost + defined["source_predict_seconds"]  # the source model's predictions
        seconds = float(cost.median())
        if math.isnan(seconds):
            continue
        row: dict[str, Any] = {
            "score": SCORE_LABELS[score],
            "backbones": len(defined),
            "seconds per backbone": seconds,
        }
        for strategy, train in training.items():
            row[f"{_short(strategy)} training s"] = train
            row[f"{_short(strategy)} / score"] = train / seconds if seconds > 0 else math.inf
        rows.append(row)
    return pd.DataFrame(rows).round(4)


def transferability_blocks(
    scores: pd.DataFrame, tau: pd.DataFrame, df: pd.DataFrame
) -> list[Block]:
    """The transferability part of a section: scores beside accuracies, tau, cost."""
    notes = sorted(
        {part for n in scores.get("note", pd.Series(dtype=str)).dropna() for part in n.split("; ")}
        - {""}
    )
    blocks: list[Block] = [
        ("h3", "Scores of the frozen features beside the measured accuracy"),
        (
            "p",
            "Each score is computed from the feature cache of the train split (k-NN: "
            "fitted on train, scored on validation); the test split is not read. FE: "
            "feature_extraction (a Keras head on the cached features), LP: linear_probe "
            "(logistic regression, C chosen by cross-validation on the train split); accuracies are means over seeds.",
        ),
        ("table", scores_beside_accuracy(scores, df)),
    ]
    if notes:
        blocks += [("p", "Undefined scores (NaN above):"), ("ul", notes)]
    blocks += [("p", text) for text in tiny_features_note(scores)]
    blocks += [
        ("h3", "Do the scores rank the backbones as training does?"),
        (
            "p",
            "Weighted Kendall tau (scipy.stats.weightedtau) of each score against each "
            "strategy's mean accuracy across the scored backbones of a dataset: 1 is the "
            "same order, 0 no relation, -1 the reverse. In brackets its "
            f"{TAU_CONFIDENCE:.0%} percentile bootstrap interval over the backbones "
            "(scipy.stats.bootstrap, score and accuracy resampled in pairs, "
            f"{TAU_RESAMPLES} resamples): with a handful of backbones it "
            "is wide, and a tau is called positive only when the whole interval is above "
            "0. Over three or four backbones even a perfect order can have an interval of "
            "[1, 1]: the findings below also give the two-sided permutation p-value "
            "(scipy.stats.permutation_test), how often chance orders the backbones as "
            "well. Test rows are reported only: nothing is chosen by them.",
        ),
        ("table", tau_pivot(tau)),
        ("ul", tau_findings(tau)),
    ]
    cost = cost_table(scores, df)
    if not cost.empty:
        blocks += [
            ("h3", "What scoring costs"),
            (
                "p",
                "Median seconds to score one backbone on one dataset from its cached "
                "features (over the backbones where the score is defined; NCE and LEEP "
                "with the source classifier's predictions on the train images), against the median training seconds (train_seconds) of a run on "
                "the same cached features: the run's whole strategy step, loading the "
                "features, fitting, and assembling the model it saves. The cache itself "
                "is computed once, by its own job, for both, and counted in neither.",
            ),
            ("table", cost),
        ]
    return blocks


def scores_rank_backbones(scores: pd.DataFrame | None) -> bool:
    """Whether the study scored enough backbones of a dataset for the scores to rank
    them (:data:`tlbench.analysis.transferability.tau.MIN_BACKBONES`): else a study that scores its one
    pretrained backbone gets no transferability part, whose every tau would be undefined."""

    if scores is None or scores.empty:
        return False
    return int(scores.groupby("dataset")["backbone"].nunique().max()) >= MIN_BACKBONES
