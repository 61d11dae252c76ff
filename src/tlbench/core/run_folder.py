"""A run folder's format, shared by its writer (tlbench.training.engine) and its one reader
(tlbench.analysis.runs): the columns of history.csv.
"""

from __future__ import annotations

#: The columns of a run's ``history.csv``, one row per epoch of every phase.
HISTORY_COLUMNS = (
    "epoch",
    "phase",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "learning_rate",
    "seconds",
)

#: The columns a learning curve needs: the first six of :data:`HISTORY_COLUMNS`.
CURVE_COLUMNS = HISTORY_COLUMNS[:6]
