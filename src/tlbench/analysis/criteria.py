"""What chooses: the study's ``selection.metric`` (accuracy, balanced accuracy,
macro-F1, ROC AUC, or ``auto``), carried in the study table's :data:`METRIC_COLUMN`
(written by scripts/study_csv.py) so that every choice made from the table
(:mod:`tlbench.analysis.selection`, the verdict) follows it; and the metrics in words.
"""

from __future__ import annotations

import pandas as pd

#: ``selection.metric`` (study config) -> ``(validation column, label)``.
METRICS = {
    "accuracy": ("val_accuracy", "validation accuracy"),
    "balanced_accuracy": ("val_balanced_accuracy", "validation balanced accuracy"),
    "macro_f1": ("val_macro_f1", "validation macro-F1"),
    "roc_auc": ("val_roc_auc", "validation ROC AUC"),
}
#: The validation column of a criterion -> its label.
LABELS = dict(METRICS.values())
#: A metric (``selection.metric`` or a verdict's ``compared``) in words.
WORDS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "macro_f1": "macro-F1",
    "roc_auc": "ROC AUC",
}
#: ``selection.metric``'s default: accuracy, ROC AUC where every run has two classes.
AUTO = "auto"
#: The study table's column naming the study's ``selection.metric`` (scripts/study_csv.py).
METRIC_COLUMN = "selection_metric"


def with_metric(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The study table with the study's ``selection.metric`` in :data:`METRIC_COLUMN`."""
    if metric != AUTO and metric not in METRICS:
        raise ValueError(f"selection.metric {metric!r}; valid: {AUTO}, {', '.join(METRICS)}")
    return df.assign(**{METRIC_COLUMN: metric})


def selection_metric(df: pd.DataFrame) -> str:
    """The study's ``selection.metric`` from its table (:data:`AUTO` without the column)."""
    if METRIC_COLUMN not in df:
        return AUTO
    values = set(df[METRIC_COLUMN].dropna().astype(str))
    if len(values) > 1:
        raise ValueError(f"the study table names several selection metrics: {sorted(values)}")
    metric = values.pop() if values else AUTO
    if metric != AUTO and metric not in METRICS:
        raise ValueError(f"selection.metric {metric!r}; valid: {AUTO}, {', '.join(METRICS)}")
    return metric
