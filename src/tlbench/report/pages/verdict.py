"""The verdict's page: the study's front section (RST, for the Snakemake report) and the
verdict's tables written beside it.
"""

from __future__ import annotations

import base64
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from tlbench.analysis import tables
from tlbench.analysis.criteria import LABELS, WORDS
from tlbench.analysis.set_aside import set_aside, with_set_aside
from tlbench.analysis.verdict.across import AcrossDatasets, across_or_none
from tlbench.analysis.verdict.answer import DEFAULT_COST
from tlbench.analysis.verdict.assess import assess, ranking
from tlbench.analysis.verdict.bootstrap import MARGIN, POOL_BELOW, REPS, SEED
from tlbench.core.atomic import atomic_file
from tlbench.report import render
from tlbench.report.figures.answer import answer_figure
from tlbench.report.figures.base import message_figure
from tlbench.report.pages.costs import cost_words

# --------------------------------------------------------------------------- front section


def text(row: Any, key: str) -> str:
    """A text column of a verdict row, read back from CSV or not ("" for an empty one)."""
    value = row.get(key) if hasattr(row, "get") else None
    return value if isinstance(value, str) else ""


def _number(row: Any, key: str) -> float | None:
    value = row.get(key) if hasattr(row, "get") else None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def validation_words(v: Any) -> str:
    """What validation measured, for the sentence naming the chosen cell:
    ``on 133 groups of validation images (3990 images; standard error 0.0206)``."""
    n, groups, se = _number(v, "val_n"), _number(v, "val_groups"), _number(v, "val_se")
    if n is None:
        return ""
    what = (
        f"{groups:.0f} groups of validation images ({n:.0f} images, counted as groups)"
        if groups is not None
        else f"{n:.0f} validation images"
    )
    return f" on {what}" + (f" (standard error {se:.4f})" if se is not None else "")


def compared_value(v: Any) -> float:
    """The chosen cell's test value of the quantity the verdict compares (accuracy in a
    verdict written before ``compared``)."""
    value = _number(v, "test_value")
    return v["test_accuracy"] if value is None else value


def answer_lines(v: Any) -> list[str]:
    """One dataset's verdict in sentences (reStructuredText bullets after a sentence)."""
    criterion = LABELS.get(v["criterion"], "validation accuracy")
    compared = WORDS[text(v, "compared") or "accuracy"]
    at = f" at label budget {v['budget']}" if isinstance(v.get("budget"), str) else ""
    close, warning = text(v, "val_close"), text(v, "val_warning")
    choose = f" {warning}." if warning else ""
    if close and not warning:
        choose = (
            f" Validation cannot tell it from {', '.join(f'``{c}``' for c in close.split('; '))}"
            " (within 2 standard errors of the difference)."
        )
    lines = [
        f"**{v['dataset']}**{at}: chosen by mean {criterion} over seeds"
        f"{validation_words(v)}: ``{v['selected']}``, test {compared} "
        f"{compared_value(v):.4f} (95 % interval {v['ci_low']:.4f} to {v['ci_high']:.4f}, "
        f"{v['seeds']} seed{'s' if v['seeds'] != 1 else ''}).{choose}",
        "",
    ]
    equivalent, inconclusive = text(v, "equivalent"), text(v, "inconclusive")
    lines += [
        f"* Equivalent to it (difference and interval inside ±{v['margin']:g}): {equivalent}."
        if equivalent
        else "* No other cell is shown equivalent to it.",
        "",
    ]
    if inconclusive:
        lines += [f"* Inconclusive (the data cannot tell): {inconclusive}.", ""]
    if text(v, "better_on_test"):
        lines += [
            f"* Better on test, though lower on validation: {text(v, 'better_on_test')} "
            "(validation chose; a test figure does not).",
            "",
        ]
    worse = _number(v, "worse")
    if worse:
        lines += [f"* Worse than it: {worse:.0f} cell{'s' if worse != 1 else ''}.", ""]
    if text(v, "set_aside"):  # cells that did not learn (tlbench.analysis.set_aside)
        lines += [
            f"* Set aside (did not learn; no verdict rests on them): {text(v, 'set_aside')}.",
            "",
        ]
    if text(v, "gain_note") and not text(v, "best_pretrained"):
        lines += [f"* Transfer gain: none; {text(v, 'gain_note')}.", ""]
    if text(v, "best_pretrained"):
        why = f" ({text(v, 'gain_reason')})" if text(v, "gain_reason") else ""
        lines += [
            f"* Transfer gain: ``{v['best_pretrained']}`` (pretrained) minus "
            f"``{v['best_scratch']}`` (no pretrained weights) = {v['transfer_gain']:+.4f} "
            f"[{v['gain_low']:+.4f}, {v['gain_high']:+.4f}]: {v['gain_verdict']}{why}.",
            "",
        ]
    cheapest = text(v, "cheapest_as_good")
    if text(v, "cost_note"):  # a cell shown as good without the chosen cost recorded
        lines += [
            f"* The budget answer: shown to be as good as the chosen one: {text(v, 'as_good')}; "
            f"{text(v, 'cost_note')}.",
            "",
        ]
    elif not cheapest:
        lines += [
            "* The budget answer: no other cell is shown to be as good as the chosen one "
            f"(equivalent, or non-inferior: its interval's lower bound at or above "
            f"-{v['margin']:g}), so the data support no cheaper answer.",
            "",
        ]
    elif cheapest == v["selected"]:
        lines += [
            f"* The budget answer: the chosen cell is itself the cheapest of the cells shown "
            f"to be as good ({text(v, 'as_good')}).",
            "",
        ]
    else:
        lines += [
            f"* The budget answer: ``{cheapest}`` is the cheapest cell shown to be as good as "
            f"the chosen one (equivalent, or non-inferior: lower bound at or above "
            f"-{v['margin']:g}; {cheapest_cost_words(v)}, test accuracy {v['cheapest_accuracy']:.4f}).",
            "",
        ]
    return lines


def cheapest_cost_words(v: Any) -> str:
    """The cheapest cell's cost in words, by the verdict's ``cost`` (``verdict.cost``; a
    verdict table from before the option: training seconds, what it was chosen by)."""
    cost = text(v, "cost") or "train_seconds"
    value = _number(v, "cheapest_cost") if text(v, "cost") else _number(v, "cheapest_seconds")
    return cost_words(cost, value if value is not None else math.nan)


def cheapest_text(v: Any) -> str:
    """The cheapest cell shown as good with its cost, for a table cell."""
    cheapest = text(v, "cheapest_as_good")
    if text(v, "cost_note"):
        return text(v, "cost_note")
    return f"{cheapest} ({cheapest_cost_words(v)})" if cheapest else "none shown as good"


def _where(v: Any) -> str:
    """``digits`` or ``digits at n5`` (with label budgets)."""
    budget = v.get("budget") if hasattr(v, "get") else None
    return f"{v['dataset']} at {budget}" if isinstance(budget, str) else str(v["dataset"])


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def method_lines(verdicts: pd.DataFrame) -> list[str]:
    """How the intervals were made and what the outcomes mean, one sentence each."""
    margins = verdicts["margin"].dropna() if "margin" in verdicts else pd.Series(dtype=float)
    margin = float(margins.iloc[0]) if len(margins) else MARGIN
    grouped = [
        f"{_where(v)} ({v['units']:.0f} groups of {v['images']:.0f} test images)"
        for _, v in verdicts.iterrows()
        if _number(v, "units") is not None and v["units"] < v["images"]
    ]
    pooled = [
        f"{_where(v)} ({_count(len(text(v, 'pooled').split('; ')), 'cell')}, "
        f"{v['pooled_df']:.0f} degrees of freedom)"
        for _, v in verdicts.iterrows()
        if text(v, "pooled")
    ]
    family = max((int(f) for f in verdicts.get("family", []) if f == f), default=0)
    return [
        "*Outcomes*: **better** / **worse**: the 95 % interval of the difference lies above "
        f"/ below 0; **equivalent**: it lies inside ±{margin:g} (the practical-equivalence "
        "margin, ``verdict.margin``); **inconclusive**: anything else, the data cannot tell.",
        "",
        "*Test images*: the paired bootstrap resamples the test images once for all cells"
        + (
            f", whole groups where the dataset declares them, since images of a group "
            f"are not independent: {'; '.join(grouped)}."
            if grouped
            else "; no dataset here declares groups of images, so images are resampled one by one."
        ),
        "",
        "*Seeds*: each cell's seed-to-seed variance is its own with "
        f"{POOL_BELOW} seeds or more, else pooled over the dataset's cells (unless the "
        "cells' variances differ, or its own is the larger); the intervals use Student's "
        "t with the degrees of "
        "freedom that estimate has; a cell with one seed of a stochastic strategy is "
        "always inconclusive." + (f" Pooled: {'; '.join(pooled)}." if pooled else ""),
        "",
        "*Seeds to resolve* (beside an inconclusive cell): seeds per cell at which a "
        "two-sided 5 % t-test detects a difference of the margin with 80 % power "
        "(statsmodels), on the seed variance pooled over the dataset's cells; rounded to "
        "one significant figure, with the range over that variance's 80 % interval.",
        "",
        f"*Many comparisons*: the intervals of a dataset's comparisons with its chosen cell "
        f"(up to {family} here) hold together (a simultaneous 95 % band from the joint "
        "bootstrap replicates), so the chance that any one is wrongly called better or "
        "worse is at most 5 %.",
        "",
    ]


def figure_lines(png: str | os.PathLike) -> list[str]:
    """reStructuredText of the answer's figure (:mod:`tlbench.report.figures.answer`),
    embedded as a data URI so the report's first page carries it."""
    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    # docutils joins a URI's lines (its whitespace removed) and limits a line's length
    chunks = [data[i : i + 76] for i in range(0, len(data), 76)]
    return [
        ".. image:: data:image/png;base64,",
        *(f"   {chunk}" for chunk in chunks),
        "   :alt: the verdict per dataset: each cell's difference from the chosen cell, "
        "its interval, the margin band, its outcome and its training seconds",
        "   :class: tlbench-verdict-figure",
        "   :width: 100%",
        "",
    ]


def front_section(
    verdicts: pd.DataFrame,
    across: AcrossDatasets | None = None,
    figure: str | os.PathLike | None = None,
) -> str:
    """The report's front section (reStructuredText): the answer's figure (``figure``, a
    PNG) when given, then the verdict in sentences."""
    lines = ["Verdict", "-------", ""]
    if figure is not None:
        lines += figure_lines(figure)
    for _, v in verdicts.iterrows():
        if not text(v, "selected"):  # every cell set aside (tlbench.analysis.set_aside)
            lines += [f"**{v['dataset']}**: {text(v, 'gain_note')}: {text(v, 'set_aside')}.", ""]
            continue
        lines += answer_lines(v)
    if any(text(v, "selected") for _, v in verdicts.iterrows()):  # some cell compared
        lines += method_lines(verdicts)
    if across is not None and across.warning:  # too few datasets: a warning, no headline
        lines += [f"**Across {len(across.scores)} datasets**: {across.warning}.", ""]
    elif across is not None:
        said = [
            f"``{a}`` vs ``{b}``: {outcome}"
            for a, b, outcome in across.pairs[["a", "b", "outcome"]].itertuples(index=False)
        ]
        lines += [
            f"**Across {len(across.scores)} datasets** (baycomp's Bayesian signed-rank test, "
            f"±{across.margin:g}): {'; '.join(said)}.",
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
    "chosen by validation, its test accuracy with a 95 % interval and each other cell's "
    "outcome against it.\n"
)


def write_verdict(
    study: pd.DataFrame,
    table_stem: str | os.PathLike,
    ranking_stem: str | os.PathLike,
    front_path: str | os.PathLike,
    margin: float = MARGIN,
    reps: int = REPS,
    seed: int = SEED,
    figure_path: str | os.PathLike | None = None,
    cost: str = DEFAULT_COST,
) -> pd.DataFrame:
    """Write the verdict table (``<table_stem>.csv/.md/.html``), the strategy ranking
    (``<ranking_stem>.*``, :func:`ranking`), the answer's figure (``figure_path``, when
    given: :func:`tlbench.report.figures.answer.answer_figure`) and the report's front
    section (``front_path``, reStructuredText, the figure first) from one
    :func:`assess`; return the verdicts. A pilot study (test split sealed) gets the
    ranking by validation figures (:func:`tlbench.analysis.tables.strategy_ranking`)
    and no verdict (its figure says so). ``cost`` (``verdict.cost``) names the cheapest
    cell shown as good."""

    def no_figure(reason: str) -> None:
        if figure_path is not None:
            message_figure(figure_path, "No verdict", [reason])

    if tables.is_pilot(study):  # no test predictions: nothing to give a verdict on
        render.write_table(pd.DataFrame(columns=["dataset", "selected", "note"]), table_stem)
        render.write_table(tables.strategy_ranking(study), ranking_stem)
        write_front_section(PILOT_SECTION, front_path)
        no_figure("pilot study: the test split is sealed")
        return pd.DataFrame()
    aside = set_aside(study)  # runs that did not learn: shown, never compared
    if aside.kept.empty and len(aside.cells):  # every finished run set aside: no comparison
        verdicts = with_set_aside(pd.DataFrame(columns=["dataset", "selected"]), aside)
        render.write_table(verdicts, table_stem)
        render.write_table(pd.DataFrame(columns=["dataset", "rank", "verdict"]), ranking_stem)
        write_front_section(front_section(verdicts), front_path)
        no_figure("every run was set aside: none learned")
        return verdicts
    result = assess(aside.kept, margin, reps, seed, cost=cost)
    verdicts = with_set_aside(result.verdicts, aside)
    across, _ = across_or_none(result.whole(), margin)  # budgets: the largest, normally 'all'
    render.write_table(verdicts, table_stem)
    render.write_table(ranking(result.cells), ranking_stem)
    if figure_path is not None:
        answer_figure(result.whole(), margin, figure_path)
    write_front_section(front_section(verdicts, across, figure_path), front_path)
    return verdicts
