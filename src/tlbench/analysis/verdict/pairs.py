"""Two cells side by side: any two cells of a dataset (:func:`pairwise_table`) and
BatchNorm frozen against trained (:func:`batchnorm_table`), from one bootstrap per
dataset (:func:`dataset_bootstraps`). Each table's intervals hold together over its
family of comparisons in a dataset (every pair of cells; every BatchNorm pair): a
simultaneous band (:func:`tlbench.analysis.verdict.intervals.intervals`), its size in
the ``family`` column.
"""

from __future__ import annotations

import pandas as pd

from tlbench.analysis.verdict.assess import DatasetBootstraps, validation_criterion
from tlbench.analysis.verdict.bootstrap import (
    LEVEL,
    MARGIN,
    REPS,
    SEED,
    bootstrap_cells,
    load_cells,
)
from tlbench.analysis.verdict.intervals import intervals, judge


def dataset_bootstraps(
    study: pd.DataFrame, reps: int = REPS, seed: int = SEED
) -> DatasetBootstraps:
    """One paired bootstrap (:func:`bootstrap`) per dataset over its cells in
    :func:`load_cells`' order: what :func:`pairwise_table` and :func:`batchnorm_table`
    read, computed once when a page needs both."""
    return [
        (dataset, cells, bootstrap_cells(cells, reps, seed))
        for dataset, cells in load_cells(study).items()
    ]


def pairwise_table(
    study: pd.DataFrame,
    margin: float = MARGIN,
    reps: int = REPS,
    seed: int = SEED,
    level: float = LEVEL,
    bootstraps: DatasetBootstraps | None = None,
) -> pd.DataFrame:
    """Every ordered pair of cells of each dataset: ``a`` and ``b``
    (``backbone/strategy/augmentation``), ``difference`` = a - b of mean test
    accuracy with its interval from the dataset's paired bootstrap (simultaneous over
    the dataset's unordered pairs, ``family``) and the outcome of a against b
    (:func:`tlbench.analysis.verdict.intervals.judge`; ``reason`` when forced). For comparisons a page names (e.g. seed 001's
    second phases against the frozen model), not for choosing: the choice is
    :func:`validation_order`'s. ``bootstraps``: :func:`dataset_bootstraps` of the
    study, when already computed."""
    records = []
    for dataset, cells, replicates in bootstraps or dataset_bootstraps(study, reps, seed):
        family = [(i, j) for i in range(len(cells)) for j in range(i + 1, len(cells))]
        bands = intervals(replicates, family, level)
        band = {
            pair: (bands["low"].iloc[k], bands["high"].iloc[k]) for k, pair in enumerate(family)
        }
        for i, a in enumerate(cells):
            for j, b in enumerate(cells):
                if i == j:
                    continue
                low, high = band[(i, j)] if i < j else (-band[(j, i)][1], -band[(j, i)][0])
                verdict, reason = judge(replicates, i, j, low, high, margin)
                records.append(
                    {
                        "dataset": dataset,
                        "a": a.name,
                        "b": b.name,
                        "difference": float(a.correct.mean() - b.correct.mean()),
                        "diff_low": low,
                        "diff_high": high,
                        "verdict": verdict,
                        "reason": reason,
                        "family": len(family),
                        "margin": margin,
                    }
                )
    return pd.DataFrame(records)


def batchnorm_table(
    study: pd.DataFrame,
    margin: float = MARGIN,
    reps: int = REPS,
    seed: int = SEED,
    level: float = LEVEL,
    bootstraps: DatasetBootstraps | None = None,
) -> pd.DataFrame:
    """BatchNorm frozen against trained, for cells that differ only in that policy.

    Two cells of a dataset form a pair when they share backbone, augmentation and
    strategy name (``strategy_name``: e.g. ``fine_tune`` and ``fine_tune_bn_train``
    of one backbone), one with ``batchnorm`` ``frozen`` and one with ``train``, and
    no other cell of that group has either policy (an ambiguous group is left out).
    Per pair: both cells' mean test accuracy and mean validation figure (the
    dataset's criterion), ``difference`` = frozen - train with its interval from
    the dataset's paired bootstrap (simultaneous over the dataset's pairs,
    ``family``), the outcome of frozen against train
    (:func:`tlbench.analysis.verdict.intervals.judge`) and both cells' mean training
    time. Empty (no
    rows) when the study has no such pair. ``bootstraps``: :func:`dataset_bootstraps`
    of the study, when already computed.
    """
    records = []
    for dataset, cells, replicates in bootstraps or dataset_bootstraps(study, reps, seed):
        groups: dict[tuple[str, str, str], dict[str, list[int]]] = {}
        for index, cell in enumerate(cells):
            first = cell.rows.iloc[0]
            group = (
                str(first["backbone"]),
                str(first["strategy_name"]),
                str(first["augmentation"]),
            )
            policy = str(first.get("batchnorm", ""))
            groups.setdefault(group, {}).setdefault(policy, []).append(index)
        pairs = [
            (g, p["frozen"][0], p["train"][0])
            for g, p in groups.items()
            if len(p.get("frozen", [])) == 1 and len(p.get("train", [])) == 1
        ]
        if not pairs:
            continue
        column = validation_criterion(pd.concat([c.rows for c in cells]))
        bands = intervals(replicates, [(f, t) for _, f, t in pairs], level)
        for k, ((backbone, strategy, augmentation), f, t) in enumerate(pairs):
            low, high = float(bands["low"].iloc[k]), float(bands["high"].iloc[k])
            verdict, reason = judge(replicates, f, t, low, high, margin)
            frozen, trained = cells[f], cells[t]
            records.append(
                {
                    "dataset": dataset,
                    "backbone": backbone,
                    "strategy_name": strategy,
                    "augmentation": augmentation,
                    "frozen": frozen.key[2],
                    "train": trained.key[2],
                    "seeds": f"{frozen.correct.shape[0]}/{trained.correct.shape[0]}",
                    "criterion": column,
                    "frozen_validation": float(frozen.rows[column].mean()),
                    "train_validation": float(trained.rows[column].mean()),
                    "frozen_accuracy": float(frozen.correct.mean()),
                    "train_accuracy": float(trained.correct.mean()),
                    "difference": float(frozen.correct.mean() - trained.correct.mean()),
                    "diff_low": low,
                    "diff_high": high,
                    "verdict": verdict,
                    "reason": reason,
                    "family": len(pairs),
                    "frozen_seconds": float(frozen.rows["train_seconds"].mean()),
                    "train_seconds": float(trained.rows["train_seconds"].mean()),
                    "margin": margin,
                }
            )
    return pd.DataFrame(records)
