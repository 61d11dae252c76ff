"""The verdict's page: the study's front section (RST, for the Snakemake report) and the
verdict's tables written beside it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from tlbench.analysis import tables
from tlbench.analysis.verdict.across import AcrossDatasets, across_or_none
from tlbench.analysis.verdict.assess import assess, ranking
from tlbench.analysis.verdict.bootstrap import (
    MARGIN,
    REPS,
    SEED,
)
from tlbench.core.atomic import atomic_file
from tlbench.report import render

# --------------------------------------------------------------------------- front section


def front_section(verdicts: pd.DataFrame, across: AcrossDatasets | None = None) -> str:
    """The report's front section (reStructuredText): the verdict in sentences."""
    lines = ["Verdict", "-------", ""]
    for _, v in verdicts.iterrows():
        criterion = (
            "validation ROC AUC" if v["criterion"] == "val_roc_auc" else "validation accuracy"
        )
        at = f" at label budget {v['budget']}" if isinstance(v.get("budget"), str) else ""
        lines += [
            f"**{v['dataset']}**{at}: chosen by mean {criterion} over seeds: ``{v['selected']}``, "
            f"test accuracy {v['test_accuracy']:.4f} (95 % interval {v['ci_low']:.4f} to "
            f"{v['ci_high']:.4f}, {v['seeds']} seed{'s' if v['seeds'] != 1 else ''}).",
            "",
        ]
        if v["tied_with"]:
            lines += [f"* Tied with it (difference and interval): {v['tied_with']}.", ""]
        else:
            lines += ["* No other cell is tied with it.", ""]
        if v["better_on_test"]:
            lines += [
                f"* Better on test, though lower on validation: {v['better_on_test']} "
                "(validation chose; a test figure does not).",
                "",
            ]
        if v["best_pretrained"]:
            lines += [
                f"* Transfer gain: ``{v['best_pretrained']}`` (pretrained) minus "
                f"``{v['best_scratch']}`` (no pretrained weights) = {v['transfer_gain']:+.4f} "
                f"[{v['gain_low']:+.4f}, {v['gain_high']:+.4f}]: {v['gain_verdict']}.",
                "",
            ]
        lines += [
            f"* The budget answer: ``{v['cheapest_tied']}`` is the cheapest cell tied with the "
            f"chosen one ({v['cheapest_seconds']:.1f} s of training, test accuracy "
            f"{v['cheapest_accuracy']:.4f}).",
            "",
        ]
    margin = float(verdicts["margin"].iloc[0]) if len(verdicts) else MARGIN
    lines += [
        f"*Tied*: the 95 % interval of the difference contains 0 or lies within ±{margin:g} "
        "(the practical-equivalence margin, ``verdict.margin``). Intervals: paired hierarchical "
        "bootstrap over seeds and test images. Seeds to resolve: seeds per cell that would "
        "detect a difference of the margin with 80 % power (two-sided 5 %).",
        "",
    ]
    if across is not None:
        ranks = ", ".join(f"``{k}`` {r:.2f}" for k, r in across.ranks.items())
        lines += [
            f"**Across {len(across.scores)} datasets**: Friedman p = {across.p_value:.3g}; mean "
            f"ranks (1 = best) {ranks}; Nemenyi critical difference "
            f"{across.critical_difference:.2f} (see the critical-difference diagram).",
            "",
        ]
    return "\n".join(lines) + "\n"


def write_front_section(text: str, path: str | os.PathLike) -> Path:
    """Write the front section atomically."""
    path = Path(path)
    with atomic_file(path) as handle:
        handle.write(text)
    return path


#: The front section of a pilot study (``pilot: true``: the test split is sealed).
PILOT_SECTION = (
    "Verdict\n-------\n\nPilot study: the test split is sealed, so there is no verdict "
    "on test accuracy. Run the study with ``pilot: false`` for the verdict: the cell "
    "chosen by validation, its test accuracy with a 95 % interval and the cells tied "
    "with it.\n"
)


def write_verdict(
    study: pd.DataFrame,
    table_stem: str | os.PathLike,
    ranking_stem: str | os.PathLike,
    front_path: str | os.PathLike,
    margin: float = MARGIN,
    reps: int = REPS,
    seed: int = SEED,
) -> pd.DataFrame:
    """Write the verdict table (``<table_stem>.csv/.md/.html``), the strategy ranking
    (``<ranking_stem>.*``, :func:`ranking`) and the report's front section
    (``front_path``, reStructuredText) from one :func:`assess`; return the verdicts.
    A pilot study (test split sealed) gets the ranking by validation figures
    (:func:`tlbench.analysis.tables.strategy_ranking`) and no verdict."""

    if tables.is_pilot(study):  # no test predictions: nothing to give a verdict on
        render.write_table(pd.DataFrame(columns=["dataset", "selected", "note"]), table_stem)
        render.write_table(tables.strategy_ranking(study), ranking_stem)
        write_front_section(PILOT_SECTION, front_path)
        return pd.DataFrame()
    result = assess(study, margin, reps, seed)
    across, _ = across_or_none(result.whole())  # budgets: their largest, normally 'all'
    render.write_table(result.verdicts, table_stem)
    render.write_table(ranking(result.cells), ranking_stem)
    write_front_section(front_section(result.verdicts, across), front_path)
    return result.verdicts
