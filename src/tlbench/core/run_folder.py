"""A run folder's format, shared by its writer (tlbench.training.engine) and its one reader
(tlbench.analysis.runs): the columns of history.csv.
"""

from __future__ import annotations

#: Names callers import from here (the modules that hold them are named above).

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
