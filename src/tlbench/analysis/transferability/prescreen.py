"""Prescreening: a block's backbones ranked by a transferability score, the best `keep`
trained (:func:`prescreen`, :func:`kept_backbones`).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from tlbench.analysis.transferability.scores import SCORES

# --------------------------------------------------------------------------- prescreen


#: Columns of a prescreen table (one row per scored (dataset, backbone) of a block).
PRESCREEN_COLUMNS = ("dataset", "backbone", "score", "value", "rank", "keep", "kept", "reason")


def prescreen(scores: pd.DataFrame, score: str, keep: int) -> pd.DataFrame:
    """Which backbones a matrix block trains: per dataset, the ``keep`` best by ``score``.

    ``scores`` is the score table (:func:`scores_table`: one row per (dataset,
    backbone), computed from train and validation features only). Higher is
    better; **ties go to the backbone whose name sorts first** (a deterministic
    order that does not depend on the config's). A score that is undefined (NaN,
    :class:`DegenerateScore`) for any backbone is an error: ranking it last would
    prune that backbone for want of information rather than on its merits.

    Returns one row per (dataset, backbone) with the score's ``value``, ``rank``
    (1 = best) within its dataset, ``kept`` (bool) and the ``reason`` in words.
    """
    if score not in SCORES:
        raise ValueError(f"prescreen score: {score!r} is not a score; valid: {', '.join(SCORES)}")
    if isinstance(keep, bool) or not isinstance(keep, int | np.integer) or keep < 1:
        raise ValueError(f"prescreen keep: {keep!r} must be a positive integer")
    missing = [c for c in ("dataset", "backbone", score) if c not in scores.columns]
    if missing:
        raise ValueError(f"prescreen: the score table has no column(s) {missing}")
    if scores.duplicated(["dataset", "backbone"]).any():
        dupes = scores[scores.duplicated(["dataset", "backbone"], keep=False)]
        pairs = sorted(set(zip(dupes["dataset"], dupes["backbone"], strict=True)))
        raise ValueError(f"prescreen: (dataset, backbone) scored more than once: {pairs}")
    undefined = scores[scores[score].isna()]
    if len(undefined):
        first = undefined.iloc[0]
        note = first.get("note") if "note" in undefined else ""
        raise ValueError(
            f"prescreen: {score} is undefined (NaN) for backbone {first['backbone']!r} on "
            f"dataset {first['dataset']!r}"
            + (f" ({note})" if isinstance(note, str) and note else "")
            + "; prescreen by another score"
        )
    rows = []
    for dataset, group in scores.groupby("dataset", sort=True):
        if keep > len(group):
            raise ValueError(
                f"prescreen keep: {keep} is more than the {len(group)} backbone(s) scored on "
                f"dataset {dataset!r}"
            )
        ordered = group.assign(_value=group[score].astype(float)).sort_values(
            ["_value", "backbone"], ascending=[False, True], kind="mergesort"
        )
        for rank, (_, row) in enumerate(ordered.iterrows(), start=1):
            kept = rank <= keep
            verdict = "kept" if kept else "pruned"
            rows.append(
                {
                    "dataset": dataset,
                    "backbone": row["backbone"],
                    "score": score,
                    "value": float(row["_value"]),
                    "rank": rank,
                    "keep": int(keep),
                    "kept": kept,
                    "reason": f"{verdict}: {score} rank {rank} of {len(group)} "
                    f"(the {keep} best are trained)",
                }
            )
    return pd.DataFrame(rows, columns=list(PRESCREEN_COLUMNS))


def kept_backbones(table: pd.DataFrame | str | os.PathLike) -> dict[str, list[str]]:
    """The kept backbones per dataset of a prescreen table (a DataFrame or its CSV)."""
    if not isinstance(table, pd.DataFrame):
        table = pd.read_csv(table)
    kept = table[table["kept"].astype(bool)]
    return {d: sorted(g["backbone"]) for d, g in kept.groupby("dataset", sort=True)}
