"""The one reader of a run folder: its metrics.json, history.csv and predictions.npz, with the columns they hold."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def read_correct(run_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, correct)`` of one run: its test labels and whether the most
    probable class (``argmax`` of ``y_prob``) is the label, from ``predictions.npz``."""
    path = Path(run_dir) / "predictions.npz"
    if not path.is_file():
        raise FileNotFoundError(f"run has no test predictions: {path}")
    with np.load(path) as data:
        y_true, y_prob = np.asarray(data["y_true"]), np.asarray(data["y_prob"])
    if y_prob.ndim != 2 or len(y_prob) != len(y_true):
        raise ValueError(
            f"{path}: y_prob has shape {y_prob.shape}, expected ({len(y_true)}, classes)"
        )
    return y_true, np.argmax(y_prob, axis=1) == y_true
