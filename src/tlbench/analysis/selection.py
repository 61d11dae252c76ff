"""Choosing by validation: the one place that picks a run or a cell of a study.

Everything that *chooses* (the best run of a dataset for the confusion matrix
and the prediction grid, the results page's checks and sentences) calls
:func:`select_run` or :func:`select_cell`; the test figure of the chosen run
or cell is then *reported* beside the validation figure that chose it, never
used to choose. A number that is the best of many test scores is biased
upwards; the best of many validation scores is not a test score at all.

Criterion (:func:`criterion`): the study's ``selection.metric`` (the study table's
``selection_metric`` column, :data:`tlbench.analysis.criteria.METRIC_COLUMN`): validation accuracy, balanced
accuracy, macro-F1 or ROC AUC (two classes only). ``auto`` (the default, and a table
without the column): validation accuracy; on binary datasets (every run has 2
classes) validation ROC AUC. Ties: lower validation loss,
then the study table's order (dataset, backbone, strategy, augmentation, seed).
A cell's value is the mean over its seeds of finished runs.

When validation cannot choose (:attr:`Selection.warning`): the validation
split is too small to tell the chosen candidate from the runner-up when their
validation figures differ by less than :data:`SEPARATION` standard errors of
the difference. For accuracy at validation size n, with p the mean of the two
accuracies, the standard error of one accuracy is ``sqrt(p (1 - p) / n)`` and
of the difference of two (independent) accuracies ``sqrt(2) x`` that. For ROC
AUC the standard error is Hanley & McNeil's (1982) from the validation split's
positive and negative counts. Balanced accuracy is a mean of C per-class recalls,
each over its class's n_k images: its standard error is ``sqrt(p (1 - p) / n_b)`` with
``n_b = C² / sum(1 / n_k)`` (``val_balanced_n``), the recalls taken alike at p;
macro-F1 is given the same, an approximation (its per-class F1 also depends on
the predictions of the other classes). Seeds of a cell share the validation images, so a
mean over seeds is given the standard error of one run (not divided by the
number of seeds): averaging seeds does not add validation images. Where the
dataset groups its validation images (``val_groups``: e.g. GTSRB's tracks, ~30
frames of one sign, or a folder dataset's ``groups`` pattern), ``n`` counts the
groups, not the images: frames of one sign are not independent evidence.
Every candidate within :data:`SEPARATION` standard errors of the chosen one is
listed (:attr:`Selection.close`): validation cannot tell it from the chosen one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tlbench.analysis.criteria import AUTO, METRICS, selection_metric

CELL = ["dataset", "backbone", "strategy", "augmentation"]
#: Candidates closer than this many standard errors (of their difference) are
#: called indistinguishable on validation.
SEPARATION = 2.0
SELECTED_BY = "validation"


@dataclass
class Selection:
    """The chosen run or cell, what chose it and the test figures reported beside it."""

    kind: str  #: "run" or "cell"
    cell: tuple[Any, ...]  #: (dataset, backbone, strategy, augmentation)
    seed: int | None  #: the run's seed (None for a cell)
    criterion: str  #: study column that chose, e.g. "val_accuracy"
    label: str  #: "validation accuracy" / "validation ROC AUC"
    value: float  #: the chosen one's validation figure (mean over seeds for a cell)
    loss: float  #: its validation loss (tie-break)
    test_accuracy: float | None  #: reported beside (None: test split sealed, pilot)
    test_value: float | None  #: test counterpart of the criterion (test ROC AUC on binary)
    seeds: int  #: runs the value is the mean of
    candidates: int  #: runs / cells it was chosen among
    val_n: int | None  #: validation images
    val_groups: int | None = None  #: validation groups (None: images are independent)
    runner_up: dict[str, Any] | None = None  #: {"name", "value"} of the second best
    standard_error: float | None = None  #: of one candidate's validation figure
    difference_se: float | None = None  #: of the chosen - runner-up difference
    warning: str | None = None  #: set when validation cannot tell the two apart
    close: list[str] = field(default_factory=list)  #: candidates it cannot tell apart
    others: list[dict[str, Any]] = field(default_factory=list, repr=False)  #: the rest
    row: pd.Series | None = field(default=None, repr=False)  #: the run's study row (runs)

    @property
    def name(self) -> str:
        """``backbone/strategy/augmentation`` plus ``, seed N`` for a run."""
        text = "/".join(str(c) for c in self.cell[1:])
        return text if self.seed is None else f"{text}, seed {self.seed}"

    def describe(self, decimals: int = 4) -> str:
        """One sentence: what was chosen, by which validation figure, the test figure beside."""
        what = "mean over seeds " if self.kind == "cell" and self.seeds > 1 else ""
        test = (
            "test split sealed (pilot)"
            if self.test_accuracy is None
            else f"test accuracy {self.test_accuracy:.{decimals}f}"
        )
        if self.test_value is not None and self.criterion != "val_accuracy":
            test += (
                f", test {self.label.removeprefix('validation ')} {self.test_value:.{decimals}f}"
            )
        text = (
            f"{self.name}: chosen by {what}{self.label} {self.value:.{decimals}f} "
            f"(validation {self.evidence}, {self.candidates} candidates); {test}"
        )
        return text + (f". {self.warning}" if self.warning else "")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record (``selected_by: validation``) for a results page."""
        return {
            "selected_by": SELECTED_BY,
            "kind": self.kind,
            "cell": list(self.cell),
            "seed": self.seed,
            "criterion": self.criterion,
            "validation": self.value,
            "test_accuracy": self.test_accuracy,
            "test_value": self.test_value,
            "seeds": self.seeds,
            "candidates": self.candidates,
            "val_n": self.val_n,
            "val_groups": self.val_groups,
            "runner_up": self.runner_up,
            "standard_error": self.standard_error,
            "warning": self.warning,
            "close": list(self.close),
        }

    @property
    def evidence(self) -> str:
        """What the validation standard error counts: ``n = 3990`` images, or
        ``133 groups (3990 images)``."""
        if self.val_groups is not None:
            return f"{self.val_groups} groups ({_int_text(self.val_n)} images)"
        return f"n = {_int_text(self.val_n)}"


def _int_text(value: Any) -> str:
    return "?" if value is None else str(int(value))


def criterion(df: pd.DataFrame) -> tuple[str, str]:
    """``(column, label)`` that chooses: the one of the study's ``selection.metric``
    (:func:`selection_metric`); ``auto``: validation ROC AUC when every run is binary
    and has one, else validation accuracy."""
    ok = df[df["status"] == "ok"] if "status" in df else df
    metric = selection_metric(df)
    if metric == "roc_auc" and len(ok) and not bool((ok["num_classes"] == 2).all()):
        classes = sorted({int(c) for c in ok["num_classes"].dropna() if c != 2})
        raise ValueError(
            f"selection.metric 'roc_auc' is for two-class datasets; these runs have "
            f"{', '.join(map(str, classes))} classes (choose balanced_accuracy, macro_f1 "
            "or accuracy)"
        )
    if metric != AUTO:
        return METRICS[metric]
    if (
        len(ok)
        and "val_roc_auc" in ok
        and bool((ok["num_classes"] == 2).all())
        and ok["val_roc_auc"].notna().all()
    ):
        return "val_roc_auc", "validation ROC AUC"
    return "val_accuracy", "validation accuracy"


def _candidates(
    df: pd.DataFrame, dataset: str | None, strategies: Sequence[str] | None
) -> pd.DataFrame:
    runs = df[df["status"] == "ok"] if "status" in df else df
    if dataset is not None:
        if not (df["dataset"] == dataset).any():
            raise ValueError(
                f"no runs of dataset {dataset!r}; datasets in the study: "
                + ", ".join(sorted(map(str, df["dataset"].unique())))
            )
        runs = runs[runs["dataset"] == dataset]
    if strategies is not None:
        runs = runs[runs["strategy_name"].isin(list(strategies))]
    return runs


def _mean(values: pd.Series) -> float | None:
    values = pd.to_numeric(values, errors="coerce").dropna()
    return float(values.mean()) if len(values) else None


def select_run(
    df: pd.DataFrame, dataset: str | None = None, strategies: Sequence[str] | None = None
) -> Selection:
    """The finished run with the best validation figure (see the module docstring).

    ``dataset`` / ``strategies`` (``strategy_name`` values) restrict the
    candidates. Raises ``ValueError`` when no finished run has the figure.
    """
    column, label = criterion(_candidates(df, dataset, None))
    runs = _candidates(df, dataset, strategies).dropna(subset=[column])
    if runs.empty:
        where = f" of dataset {dataset!r}" if dataset is not None else ""
        raise ValueError(f"no finished run{where} with a {label} ({column}) to choose by")
    loss = runs["val_loss"] if "val_loss" in runs else pd.Series(np.nan, index=runs.index)
    order = runs.assign(_value=runs[column], _loss=loss.fillna(np.inf)).sort_values(
        ["_value", "_loss"], ascending=[False, True], kind="stable"
    )
    best = order.iloc[0]
    others = [
        {
            "name": "/".join(str(row[c]) for c in CELL[1:]) + f", seed {int(row['seed'])}",
            "value": float(row[column]),
        }
        for _, row in order.iloc[1:].iterrows()
    ]
    runner = others[0] if others else None
    selection = Selection(
        kind="run",
        cell=tuple(best[c] for c in CELL),
        seed=int(best["seed"]),
        criterion=column,
        label=label,
        value=float(best[column]),
        loss=float(best["val_loss"]) if "val_loss" in best else float("nan"),
        test_accuracy=_scalar(best.get("test_accuracy")),
        test_value=_scalar(best.get(column.replace("val_", "test_", 1))),
        seeds=1,
        candidates=len(order),
        val_n=_count(best.get("val_n")),
        val_groups=_count(best.get("val_groups")),
        runner_up=runner,
        others=others,
        row=best.drop(labels=["_value", "_loss"]),
    )
    return _judge(selection, best)


def select_cell(
    df: pd.DataFrame, dataset: str | None = None, strategies: Sequence[str] | None = None
) -> Selection:
    """The cell (dataset, backbone, strategy, augmentation) with the best mean
    validation figure over its seeds' finished runs; its mean test figures beside."""
    column, label = criterion(_candidates(df, dataset, None))
    runs = _candidates(df, dataset, strategies).dropna(subset=[column])
    if runs.empty:
        where = f" of dataset {dataset!r}" if dataset is not None else ""
        raise ValueError(f"no finished run{where} with a {label} ({column}) to choose by")
    test_column = column.replace("val_", "test_", 1)
    records = []
    for keys, group in runs.groupby(CELL, sort=True):
        records.append(
            {
                "cell": keys,
                "value": float(group[column].mean()),
                "loss": _mean(group["val_loss"]) if "val_loss" in group else None,
                "test_accuracy": _mean(group["test_accuracy"])
                if "test_accuracy" in group
                else None,
                "test_value": _mean(group[test_column]) if test_column in group else None,
                "seeds": len(group),
                "first": group.iloc[0],
            }
        )
    records.sort(key=lambda r: (-r["value"], math.inf if r["loss"] is None else r["loss"]))
    best = records[0]
    others = [
        {"name": "/".join(str(c) for c in r["cell"][1:]), "value": r["value"]} for r in records[1:]
    ]
    runner = others[0] if others else None
    selection = Selection(
        kind="cell",
        cell=tuple(best["cell"]),
        seed=None,
        criterion=column,
        label=label,
        value=best["value"],
        loss=float("nan") if best["loss"] is None else best["loss"],
        test_accuracy=best["test_accuracy"],
        test_value=best["test_value"],
        seeds=best["seeds"],
        candidates=len(records),
        val_n=_count(best["first"].get("val_n")),
        val_groups=_count(best["first"].get("val_groups")),
        runner_up=runner,
        others=others,
    )
    return _judge(selection, best["first"])


def _scalar(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _count(value: Any) -> int | None:
    value = _scalar(value)
    return None if value is None else int(value)


def accuracy_se(p: float, n: int) -> float:
    """Standard error of an accuracy ``p`` measured on ``n`` images."""
    if n <= 0:
        raise ValueError(f"validation n must be positive, got {n}")
    return math.sqrt(max(p * (1.0 - p), 0.0) / n)


def auc_se(auc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil's (1982) standard error of a ROC AUC."""
    if positives <= 0 or negatives <= 0:
        raise ValueError(
            f"ROC AUC standard error needs positives and negatives, got {positives}, {negatives}"
        )
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (
        auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)
    ) / (positives * negatives)
    return math.sqrt(max(var, 0.0))


def _standard_error(selection: Selection, value: float, row: Mapping[str, Any]) -> float | None:
    """Standard error of one validation figure near ``value`` (module docstring);
    None when it cannot be claimed (ROC AUC without class counts)."""
    n = selection.val_n if selection.val_groups is None else selection.val_groups
    if n is None or n <= 0:
        return None
    if selection.criterion == "val_roc_auc":
        positives = _count(row.get("val_positives"))
        if positives is None or not 0 < positives < selection.val_n:
            return None  # no class counts recorded: no standard error claimed
        share = n / selection.val_n  # groups: positives and negatives counted in groups
        return auc_se(value, max(1, round(positives * share)),
                      max(1, round((selection.val_n - positives) * share)))  # fmt: skip
    if selection.criterion in ("val_balanced_accuracy", "val_macro_f1"):
        balanced = _scalar(row.get("val_balanced_n"))
        if balanced is None:
            return None  # no class counts recorded: no standard error claimed
        return accuracy_se(value, max(1, round(balanced * n / selection.val_n)))
    return accuracy_se(value, n)


def _judge(selection: Selection, row: Mapping[str, Any]) -> Selection:
    """Set the standard errors, the candidates within :data:`SEPARATION` standard
    errors of the difference (:attr:`Selection.close`) and the warning when the
    runner-up is one of them (or level with it)."""
    if selection.runner_up is None:
        return selection
    for other in selection.others:
        se = _standard_error(selection, (selection.value + other["value"]) / 2, row)
        if se is not None and selection.value - other["value"] < SEPARATION * math.sqrt(2) * se:
            selection.close.append(str(other["name"]))
    other = selection.runner_up["value"]
    se = _standard_error(selection, (selection.value + other) / 2, row)
    if se is None:
        return selection
    what = selection.evidence
    if selection.criterion == "val_roc_auc":
        what += f", {_count(row.get('val_positives'))} positive"
    diff_se = math.sqrt(2.0) * se
    gap = selection.value - other
    selection.standard_error, selection.difference_se = se, diff_se
    if gap <= 0 or gap < SEPARATION * diff_se:
        rest = [name for name in selection.close if name != selection.runner_up["name"]]
        also = f"; nor from {', '.join(rest)}" if rest else ""
        selection.warning = (
            f"Validation cannot choose: the validation split ({what}) is too small to tell "
            f"it from the runner-up {selection.runner_up['name']} ({selection.label} "
            f"{other:.4f}): they differ by {gap:.4f}, less than {SEPARATION:g} standard "
            f"errors of the difference ({SEPARATION:g} x {diff_se:.4f}; standard error of "
            f"one {selection.label} {se:.4f}){also}"
        )
    return selection
