"""Tables rendered: Markdown or HTML from a DataFrame (:func:`render`), and a table written
as .csv, .md and .html at once (:func:`write_table`).
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from tlbench.core.atomic import atomic_file

# --------------------------------------------------------------------------- writing


def _cell(value: Any) -> Any:
    """A table cell: NaN/None -> None (tabulate's missing value), numpy scalars -> Python."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _display(value: Any, floatfmt: str, integral: bool = False) -> str:
    """Text of one cell for Markdown/HTML; ``integral`` columns print floats as integers."""
    value = _cell(value)
    if value is None:
        return ""
    if isinstance(value, float):
        if integral:
            return str(int(value))
        if value != 0 and abs(value) < 1e-3:
            return format(value, ".3g")
        return format(value, floatfmt)
    return str(value)


#: Count-like columns printed as integers (pandas stores them as float when NaN is present).
INTEGRAL_COLUMNS = {
    "seed", "batch_size", "epochs", "input_size", "num_classes", "epochs_run", "best_epoch",
    "params_total", "params_trainable", "test_n", "val_n", "train_n", "runs",
    "accuracy_rank", "roc_auc_rank", "cpu_count",
}  # fmt: skip


def render(df: pd.DataFrame, fmt: str, floatfmt: str = ".4f") -> str:
    """``df`` as Markdown (``fmt="md"``, tabulate pipe) or HTML (``fmt="html"``).

    Cells listed in ``df.attrs["best"]`` are bold (``**x**`` / ``<b>x</b>``).
    """
    if fmt not in ("md", "html"):
        raise ValueError(f"unknown table format {fmt!r}; valid formats: html, md")
    best = df.attrs.get("best", {})
    integral = {c for c in df.columns if c in INTEGRAL_COLUMNS}
    rows = []
    for position, (_, row) in enumerate(df.iterrows()):
        cells = []
        for column in df.columns:
            text = _display(row[column], floatfmt, column in integral)
            if fmt == "md":
                text = text.replace("|", "\\|")
            else:
                text = html.escape(text)
            if text and position in best.get(column, ()):
                text = f"**{text}**" if fmt == "md" else f"<b>{text}</b>"
            cells.append(text)
        rows.append(cells)
    headers = [str(c) for c in df.columns]
    align = [
        "right" if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
        else "left"
        for c in df.columns
    ]  # fmt: skip
    if fmt == "md":
        table = tabulate(
            rows, headers=headers, tablefmt="pipe", disable_numparse=True, colalign=align
        )
    else:
        headers = [html.escape(h) for h in headers]
        table = tabulate(rows, headers=headers, tablefmt="unsafehtml", disable_numparse=True)
    return table + "\n"


def write_table(df: pd.DataFrame, path_stem: str | os.PathLike) -> list[Path]:
    """Write ``df`` as ``<stem>.csv``, ``<stem>.md`` and ``<stem>.html`` (atomically).

    The CSV holds the plain values; Markdown and HTML mark the best cells
    (``df.attrs["best"]``) bold. Returns the three paths.
    """
    stem = Path(path_stem)
    paths = [stem.with_name(stem.name + suffix) for suffix in (".csv", ".md", ".html")]
    with atomic_file(paths[0]) as handle:
        df.to_csv(handle, index=False)
    with atomic_file(paths[1]) as handle:
        handle.write(render(df, "md"))
    with atomic_file(paths[2]) as handle:
        handle.write(render(df, "html"))
    return paths
