"""The learning-curve figure: accuracy against the label budget per cell, with its
t-intervals over seeds.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from tlbench.analysis.learning_curves import short_names
from tlbench.core.atomic import atomic_file


def plot(curves: pd.DataFrame, dataset: str, split: str, path: str | os.PathLike) -> Path:
    """The dataset's learning curves: a line per cell, the interval as a band, log x."""
    # deferred: the Agg backend is chosen before pyplot is imported
    import matplotlib

    matplotlib.use("Agg")
    # deferred: the Agg backend is chosen before pyplot is imported
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    names = short_names(list(dict.fromkeys(curves["cell"])))
    for cell, rows in curves.groupby("cell", sort=False):
        line = ax.plot(rows["per_class"], rows["accuracy"], marker="o", label=names[cell])[0]
        ax.fill_between(
            rows["per_class"], rows["low"], rows["high"], color=line.get_color(), alpha=0.2
        )
    ax.set_xscale("log")
    ax.set_xlabel("labelled training images per class (log; 'all' at the class mean)")
    ax.set_ylabel(f"{'test' if split == 'test' else 'validation'} accuracy")
    ax.set_title(f"{dataset}: learning curves (band: 95 % t-interval over seeds)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)
    return path
