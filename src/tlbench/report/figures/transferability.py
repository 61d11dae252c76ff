"""The transferability figure: each score against the accuracy the backbones reached, per
dataset and strategy.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from tlbench.analysis.tables import is_pilot
from tlbench.analysis.transferability.scores import SCORES
from tlbench.analysis.transferability.tau import (
    ACCURACIES,
    KEYS,
    measured_accuracy,
    tau_table,
    with_budget,
)
from tlbench.datasets.budget import ALL as BUDGET_ALL
from tlbench.report.figures.base import message_figure, save_figure


def tau_scatter(
    scores: pd.DataFrame,
    study: pd.DataFrame,
    path: str | os.PathLike,
    accuracy: str | None = None,
    tau: pd.DataFrame | None = None,
) -> Path:
    """Each score against the measured ``accuracy`` (mean over seeds; default test
    accuracy, validation accuracy in a pilot study), one panel per (dataset, score),
    one marker series per (strategy, augmentation) with its tau and 95 % interval; one row of panels per
    (dataset, label budget). ``tau``: :func:`tau_table` of the same inputs, if computed."""

    if accuracy is None:
        accuracy = "val_accuracy" if is_pilot(study) else "test_accuracy"
    if accuracy not in ACCURACIES or (accuracy == "test_accuracy" and is_pilot(study)):
        raise ValueError(f"accuracy: {accuracy!r}; valid: {', '.join(ACCURACIES)}")
    measured = measured_accuracy(study).merge(with_budget(scores), on=KEYS)
    if measured.empty:
        return message_figure(
            path,
            "Transferability scores vs. measured accuracy",
            ["no finished runs of the scored backbones: nothing to compare"],
        )
    if tau is None:  # the bootstrap and permutation test take a second per row: reuse one
        tau = tau_table(scores, study)
    taus = tau.set_index(["dataset", "budget", "strategy", "augmentation", "score", "accuracy"])[
        ["weighted_tau", "tau_low", "tau_high"]
    ]
    datasets = sorted(set(zip(measured["dataset"], measured["budget"], strict=True)))
    fig = Figure(figsize=(3.6 * len(SCORES), 3.2 * len(datasets)), layout="constrained")
    axes = fig.subplots(len(datasets), len(SCORES), squeeze=False)
    for row, (dataset, budget) in enumerate(datasets):
        of = measured[(measured["dataset"] == dataset) & (measured["budget"] == budget)]
        for col, score in enumerate(SCORES):
            ax = axes[row][col]
            at = "" if budget == BUDGET_ALL else f" ({budget})"
            ax.set_title(f"{dataset}{at}: {score}", fontsize=9)
            if of[score].isna().all():
                ax.text(
                    0.5,
                    0.5,
                    f"no {score} for any backbone\n(see the score table's note)",
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                    fontsize=8,
                )
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            for (strategy, augmentation), group in of.groupby(["strategy", "augmentation"]):
                tau, low, high = taus.loc[
                    (dataset, budget, strategy, augmentation, score, accuracy)
                ]
                label = f"{strategy}/{augmentation}: " + (
                    "tau undefined"
                    if math.isnan(tau)
                    else f"tau = {tau:+.2f} [{low:+.2f}, {high:+.2f}]"
                )
                ax.plot(group[score], group[accuracy], "o", label=label)
                for _, r in group.iterrows():
                    ax.annotate(str(r["backbone"]), (r[score], r[accuracy]), fontsize=6)
            ax.set_xlabel(score)
            if col == 0:
                ax.set_ylabel(f"{accuracy.replace('_', ' ')} (mean over seeds)")
            ax.legend(fontsize=6)
    return save_figure(fig, path)
