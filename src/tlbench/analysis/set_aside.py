"""Runs that did not learn, shown and set aside before any verdict.

A verdict, a ranking or a transfer gain that rests on a run that never learned
says something about a failure, not about a strategy: a MobileNet from random
init that sits at chance on digits makes "transfer gains +0.83" out of nothing.
:func:`set_aside` splits a study table into the runs the verdict may use and
the runs (and cells) it must not, each with its reason. Only training and
validation figures decide (never the test split):

* **at chance**: both the training and the validation accuracy are no better
  than a constant guess of the split's largest class (its share, from the
  split's confusion matrix; ``1 / classes`` when the run did not record one):
  a one-sided binomial test at level :data:`CHANCE_ALPHA` does not reject
  "accuracy = that share" on either split. A run that fits its training images
  but not the validation split learned something (it overfits) and is kept; a
  run without both figures is not judged by this rule;
* **one class**: it predicts the same class for every validation image (and every
  training image, when the run recorded its training predictions);
* **diverged**: its training loss of the last epoch is at least
  :data:`tlbench.analysis.tables.LOSS_EXPLOSION_FACTOR` times the first
  epoch's, or its final training or validation loss is not finite.

A cell (dataset, label budget, backbone, strategy, augmentation) with one such
run is set aside whole: keeping its other seeds would report the cell as if it
always learned. The verdict's callers pass :attr:`SetAside.kept` on and show
:attr:`SetAside.cells`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
from scipy import stats

from tlbench.analysis.runs import ID_COLUMNS
from tlbench.analysis.tables import loss_exploded, ok_runs

#: One-sided level of the binomial test of "no better than a constant guess".
CHANCE_ALPHA = 0.01
#: Columns of :attr:`SetAside.runs` after the identity (and ``budget``).
RUN_COLUMNS = ["train_accuracy", "val_accuracy", "reason"]
#: Columns of :attr:`SetAside.cells` after the cell's identity.
CELL_COLUMNS = ["seeds", "seeds_set_aside", "pretrained", "reason"]


@dataclass
class SetAside:
    """A study table split by :func:`set_aside`."""

    kept: pd.DataFrame  #: the study rows a verdict may use (finished runs of kept cells)
    runs: pd.DataFrame  #: runs that did not learn, with ``reason``
    cells: pd.DataFrame  #: cells left out (one run or more did not learn), with ``reason``

    def for_dataset(self, dataset: str, budget: str | None = None) -> pd.DataFrame:
        """The cells of ``dataset`` (and label ``budget``, when given) that were left out."""
        cells = self.cells[self.cells["dataset"] == dataset]
        if budget is not None and "budget" in cells:
            cells = cells[cells["budget"].fillna("all") == budget]
        return cells


def _number(value: Any) -> float:
    """``value`` as a float, NaN when missing or not a number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def chance_level(row: pd.Series, split: str) -> float:
    """The accuracy of a constant guess on ``split``: the share of its largest class
    (``<split>_majority_share``), else ``1 / num_classes``; NaN when neither is known."""
    share = _number(row.get(f"{split}_majority_share"))
    if not math.isnan(share):
        return share
    classes = _number(row.get("num_classes"))
    return 1.0 / classes if classes >= 1 else math.nan


def at_chance(accuracy: float, n: float, chance: float, alpha: float = CHANCE_ALPHA) -> bool:
    """Whether ``accuracy`` on ``n`` images is no better than ``chance``: the one-sided
    binomial test of "accuracy = chance" does not reject at ``alpha`` (``n`` unknown:
    ``accuracy <= chance``)."""
    if math.isnan(n) or n < 1:
        return accuracy <= chance
    correct = round(accuracy * n)
    return bool(stats.binomtest(int(correct), int(n), chance, alternative="greater").pvalue > alpha)


def did_not_learn(row: pd.Series, alpha: float = CHANCE_ALPHA) -> list[str]:
    """Why a finished run did not learn (module docstring); empty when it learned."""
    reasons = []
    checked = []
    for split, label in (("train", "training"), ("val", "validation")):
        accuracy, chance = _number(row.get(f"{split}_accuracy")), chance_level(row, split)
        if math.isnan(accuracy) or math.isnan(chance):
            continue
        n = _number(row.get(f"{split}_n"))
        checked.append(
            (at_chance(accuracy, n, chance, alpha), f"{label} {accuracy:.4f} vs {chance:.4f}")
        )
    if len(checked) == 2 and all(flag for flag, _ in checked):  # both splits known
        reasons.append(
            "accuracy at chance (a constant guess of the largest class): "
            + ", ".join(text for _, text in checked)
        )
    classes = _number(row.get("num_classes"))
    on_val, on_train = (_number(row.get(f"{s}_classes_predicted")) for s in ("val", "train"))
    if classes >= 2 and on_val == 1 and (math.isnan(on_train) or on_train == 1):
        where = "validation image" if math.isnan(on_train) else "training and validation image"
        reasons.append(f"predicts one class for every {where} ({int(classes)} classes)")
    first, last = _number(row.get("history_loss_first")), _number(row.get("history_loss_last"))
    if loss_exploded(first, last):
        reasons.append(
            f"training loss diverged: {last:.4g} in the last epoch, "
            f"{last / first:.0f}x the first epoch's {first:.4g}"
        )
    for split, label in (("train", "training"), ("val", "validation")):
        if math.isinf(_number(row.get(f"{split}_loss"))):
            reasons.append(f"final {label} loss is not finite")
    return reasons


def _cell_columns(study: pd.DataFrame) -> list[str]:
    budget = ["budget"] if "budget" in study else []
    return ["dataset", *budget, *ID_COLUMNS[1:-1]]


def set_aside(study: pd.DataFrame, alpha: float = CHANCE_ALPHA) -> SetAside:
    """Split the study table's finished runs into those a verdict may use and the runs
    and cells that did not learn (module docstring), each with its reason."""
    finished = ok_runs(study)
    cell = _cell_columns(study)
    reasons = pd.Series(
        ["; ".join(did_not_learn(row, alpha)) for _, row in finished.iterrows()],
        index=finished.index,
        dtype=object,
    )
    failed = finished[reasons != ""].assign(reason=reasons[reasons != ""])
    runs = failed.reindex(columns=[*cell, "seed", *RUN_COLUMNS]).reset_index(drop=True)
    keys = finished[cell].astype(str).apply(tuple, axis=1) if len(finished) else pd.Series()
    failed_keys = set(keys[failed.index]) if len(failed) else set()
    left_out = keys.isin(failed_keys) if len(finished) else pd.Series(dtype=bool)
    cells = []
    for values, group in finished[left_out].groupby(cell, sort=True, dropna=False):
        bad = failed[failed.index.isin(group.index)].sort_values("seed")
        seeds = ", ".join(str(int(s)) for s in bad["seed"])
        by_reason: dict[str, list[str]] = {}
        for seed, reason in zip(bad["seed"], bad["reason"], strict=True):
            by_reason.setdefault(reason, []).append(str(int(seed)))
        detail = "; ".join(
            f"seed{'s' if len(s) > 1 else ''} {', '.join(s)}: {r}" for r, s in by_reason.items()
        )
        cells.append(
            {
                **dict(zip(cell, values, strict=True)),
                "seeds": len(group),
                "seeds_set_aside": len(bad),
                "pretrained": _pretrained(group),
                "reason": f"seed{'s' if len(bad) > 1 else ''} {seeds} of {len(group)} "
                f"did not learn ({detail})",
            }
        )
    kept = finished[~left_out] if len(finished) else finished
    return SetAside(kept, runs, pd.DataFrame(cells, columns=[*cell, *CELL_COLUMNS]))


def _pretrained(rows: pd.DataFrame) -> bool | None:
    """Whether a cell's runs started from pretrained weights (``pretrained`` column)."""
    values = {str(v).strip().lower() for v in rows.get("pretrained", pd.Series()).dropna()}
    if values and values <= {"true", "1", "1.0"}:
        return True
    if values and values <= {"false", "0", "0.0"}:
        return False
    return None


def _cell_name(row: pd.Series) -> str:
    return f"{row['backbone']}/{row['strategy']}/{row['augmentation']}"


def with_set_aside(verdicts: pd.DataFrame, aside: SetAside) -> pd.DataFrame:
    """The verdict table (one row per dataset, and label budget) with what was left out:
    ``set_aside`` (each cell left out and why) and ``gain_note`` (why there is no
    transfer gain when the cells on one side were all set aside, or which cells the
    gain left out). A dataset whose every cell was set aside gets a row with no
    selected cell."""
    table = verdicts.copy()
    by_budget = "budget" in aside.cells or "budget" in table
    rows = []
    for _, v in table.iterrows():
        budget = v.get("budget") if by_budget and isinstance(v.get("budget"), str) else None
        left = aside.for_dataset(v["dataset"], budget)
        v = v.copy()
        v["set_aside"] = "; ".join(f"{_cell_name(c)}: {c['reason']}" for _, c in left.iterrows())
        kept = aside.kept[aside.kept["dataset"] == v["dataset"]]
        if budget is not None and "budget" in kept:
            kept = kept[kept["budget"].fillna("all") == budget]
        v["gain_note"] = _gain_note(v, left, kept)
        rows.append(v)
    seen = {(v["dataset"], v.get("budget")) for v in rows} if rows else set()
    groups = ["dataset", "budget"] if "budget" in aside.cells else ["dataset"]
    for key, left in aside.cells.groupby(groups, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        dataset, budget = key[0], (key[1] if len(key) > 1 else None)
        if (dataset, budget if "budget" in table else None) in seen or (dataset, None) in seen:
            continue
        rows.append(
            pd.Series(
                {
                    "dataset": dataset,
                    **({"budget": budget} if "budget" in aside.cells else {}),
                    "selected": "",
                    "set_aside": "; ".join(
                        f"{_cell_name(c)}: {c['reason']}" for _, c in left.iterrows()
                    ),
                    "gain_note": "no verdict: every cell of the dataset was set aside",
                }
            )
        )
    columns = [*table.columns, *(c for c in ("set_aside", "gain_note") if c not in table)]
    return pd.DataFrame(rows).reindex(columns=columns).reset_index(drop=True)


def _gain_note(verdict: pd.Series, left: pd.DataFrame, kept: pd.DataFrame) -> str:
    """Why a dataset has no transfer gain, or which cells its transfer gain left out
    (``left``: its cells set aside; ``kept``: its runs kept)."""
    sides = {True: "with", False: "without"}
    lost = {
        flag: [_cell_name(c) for _, c in left.iterrows() if c["pretrained"] is flag]
        for flag in sides
    }
    if not lost[True] and not lost[False]:
        return ""
    has_gain = isinstance(verdict.get("best_pretrained"), str) and bool(verdict["best_pretrained"])
    if has_gain:
        names = ", ".join(lost[True] + lost[False])
        return f"the transfer gain leaves out cells that did not learn: {names}"
    cells = [_pretrained(group) for _, group in kept.groupby(ID_COLUMNS[1:-1])]
    remaining = {flag: flag in cells for flag in sides}
    emptied = [f for f in sides if lost[f] and not remaining[f]]
    if not emptied or not (remaining[not emptied[0]] or lost[not emptied[0]]):
        return ""
    flag = emptied[0]
    return (
        f"no transfer gain: every cell {sides[flag]} pretrained weights did not learn and "
        f"was set aside ({', '.join(lost[flag])})"
    )
