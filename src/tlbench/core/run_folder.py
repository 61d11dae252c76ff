"""A run folder's format, shared by its writer (tlbench.training.engine) and its one reader
(tlbench.analysis.runs): the columns of history.csv, the files a run folder holds.
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

#: The files of a run folder written before outputs were marked
#: (:data:`tlbench.core.atomic.MARKER`): such a folder is taken as a run's.
RUN_LAYOUT = ("metrics.json", "history.csv", "classes.json", "model.keras", "*.npz")
