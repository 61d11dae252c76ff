"""A prepared dataset's duplicates as a table (the report's per-dataset table): the
counts :mod:`tlbench.datasets.duplicates` recorded in its manifest while preparing."""

from __future__ import annotations

import os

import pandas as pd

from tlbench.datasets import load_prepared


def duplicate_table(prepared: str | os.PathLike) -> pd.DataFrame:
    """One row per pair of splits (images of the second with a copy in the first; exact
    and near, near including exact), and the groups of copies under two labels."""
    data = load_prepared(prepared, splits=())
    record = data.manifest.get("duplicates")
    if record is None:
        raise ValueError(
            f"{prepared}: manifest.json records no duplicates (prepared by an older tlbench); "
            "prepare it again"
        )
    rows = [
        {"Splits": r["splits"], "Exact copies": r["exact"], "Near copies": r["near"]}
        for r in record["pairs"]
    ]
    mixed = record["across_classes"]
    rows.append(
        {
            "Splits": "groups under two labels",
            "Exact copies": mixed["exact"],
            "Near copies": mixed["near"],
        }
    )
    table = pd.DataFrame(rows)
    return table
