"""Measured studies that are not seed studies: their sections of ``docs/results.md``.

A study config with a ``results_section: {page, title}`` block (e.g.
``configs/measured/transferability.yaml``) gets one section of the results page,
written by the rule ``study_results`` from the study's outputs, never typed by hand:

* the header every measured study's section opens with
  (:func:`tlbench.report.pages.results.study_header`: config, runs, wall time on the CPU that
  ran it, code version, the looks at each test split);
* the verdict per dataset (and label budget) from ``tables/verdict.csv``
  (:mod:`tlbench.analysis.verdict`: the validation-selected cell, its test accuracy with
  its interval, the cells equivalent to it and those the data cannot tell from it, the
  transfer gain, the cheapest cell shown to be as good);
* across two or more datasets: each pair of strategies by baycomp's Bayesian
  signed-rank test, a warning and no outcome with too few datasets
  (:func:`tlbench.analysis.verdict.across.across_datasets`);
* with label budgets (:mod:`tlbench.datasets.budget`): per dataset, test accuracy with its
  interval per cell and budget, the crossovers in words
  (:mod:`tlbench.analysis.learning_curves`) and at which budgets transfer beat training
  without pretrained weights (the verdict's transfer gain per budget);
* when the study scores backbones (:mod:`tlbench.analysis.transferability`): every score
  beside the measured accuracy of each strategy, each score's weighted Kendall tau
  against each accuracy, in words how well each score predicted, and what scoring
  cost against the training it stands in for.

The section's summary (``<page>.json``) is what ``docs/results.md``'s overview lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from tlbench.analysis import learning_curves, tables
from tlbench.analysis.set_aside import set_aside
from tlbench.analysis.tables import mean_sd, ok_runs, reported_split, wall_time
from tlbench.analysis.verdict import across as verdict_across
from tlbench.analysis.verdict.bootstrap import MARGIN
from tlbench.analysis.verdict.intervals import OUTCOMES
from tlbench.datasets import budget
from tlbench.report.pages.costs import cell_cost_cells
from tlbench.report.pages.learning_curves import crossover_lines, paired_comparisons
from tlbench.report.pages.results import (
    CELL,
    Block,
    cell_table,
    format_seconds,
    machine_text,
    study_header,
    verdict_blocks,
)
from tlbench.report.pages.transferability import scores_rank_backbones, transferability_blocks


def cells_blocks(df: pd.DataFrame) -> list[Block]:
    """Every cell's mean ± sd over seeds (:func:`tlbench.report.pages.results.cell_table`), with the
    validation accuracy that chose among them beside the test figure."""

    table = cell_table(df)
    if reported_split(df) == "test" and len(table):
        val = ok_runs(df).groupby(CELL, sort=False)["val_accuracy"].apply(mean_sd)
        table.insert(
            list(table.columns).index("test accuracy"),
            "val accuracy",
            [val.loc[tuple(row)] for row in table[CELL].itertuples(index=False)],
        )
    return [("h3", "Every cell (mean ± sd over seeds)"), ("table", table)]


def comparison_blocks(ranking: pd.DataFrame) -> list[Block]:
    """Per dataset every cell against the one validation chose (the strategy ranking of
    :mod:`tlbench.analysis.verdict`, validation order): its test figure, its difference
    from the chosen cell with the simultaneous interval, the outcome, and its cost beside
    it. None for label budgets (the budget tables compare per budget), for a pilot (no
    test figures) or with one cell per dataset."""
    if (
        ranking.empty
        or "budget" in ranking
        or "verdict" not in ranking  # a pilot's ranking: validation figures, no verdict
        or ranking.groupby("dataset").size().max() < 2
    ):
        return []
    compared = str(ranking["compared"].iloc[0]).replace("_", " ")
    rows = []
    for _, r in ranking.iterrows():
        chosen = int(r["rank"]) == 1
        reason = r["reason"] if isinstance(r["reason"], str) and r["reason"] else ""
        rows.append(
            {
                "dataset": r["dataset"],
                "rank": int(r["rank"]),
                "cell": "/".join(str(r[c]) for c in CELL if c != "dataset"),
                "seeds": int(r["seeds"]),
                "validation": f"{r['validation']:.3f} ({r['criterion']})",
                f"test {compared} [95 %]": (
                    f"{r['test_value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
                ),
                "difference from the chosen [95 %]": ""
                if chosen
                else f"{r['difference']:+.3f} [{r['diff_low']:+.3f}, {r['diff_high']:+.3f}]",
                "outcome": "chosen"
                if chosen
                else r["verdict"] + (f" ({reason})" if reason else ""),
                **cell_cost_cells(r),
            }
        )
    return [
        ("h3", "Each cell against the chosen one, at what cost"),
        (
            "p",
            "Per dataset in validation order (rank 1: the cell validation chose), each cell's "
            f"test {compared} with its 95 % interval, its difference from the chosen cell "
            "with the interval that holds for all of the dataset's comparisons together, the "
            "outcome (as in the verdict), and its cost, means over its seeds: parameters, "
            "forward FLOPs per image (XLA's count), FLOPs over the training images seen, and "
            "training seconds on the CPU named above.",
        ),
        ("table", pd.DataFrame(rows)),
    ]


def across_blocks(ranking: pd.DataFrame, margin: float = MARGIN) -> list[Block]:
    """Across two or more datasets (the strategy ranking's cells, tlbench.analysis.verdict):
    each strategy's test accuracy per dataset (its validation-best cell), the mean ranks
    (a description), and each pair of strategies compared by baycomp's Bayesian
    signed-rank test with ±``margin`` as the region of practical equivalence; with too
    few datasets a plain warning and no outcome; or why there is no comparison."""

    cells = ranking
    if "budget" in cells:  # label budgets: datasets are compared on their whole splits
        cells = cells[cells["budget"] == "all"]
    across, reason = verdict_across.across_or_none(cells, margin)
    blocks: list[Block] = [("h3", "Across datasets")]
    if across is None:
        return blocks + [("p", f"No comparison across datasets: {reason}.")]
    scores = across.scores.round(3).reset_index()
    ranks = ", ".join(f"{name} {rank:.2f}" for name, rank in across.ranks.items())
    pairs = across.pairs.assign(
        **{c: across.pairs[c].round(3) for c in ("p_a_better", "p_equivalent", "p_b_better")}
    ).rename(
        columns={
            "a": "A",
            "b": "B",
            "p_a_better": "P(A better)",
            "p_equivalent": f"P(within ±{margin:g})",
            "p_b_better": "P(B better)",
            "outcome": "A is",
        }  # fmt: skip
    )
    blocks += [
        (
            "p",
            "Test accuracy of each strategy's validation-chosen cell per dataset, and each "
            "pair of strategies compared across the datasets with baycomp's Bayesian "
            f"signed-rank test (region of practical equivalence ±{margin:g}; an outcome when "
            f"a posterior probability reaches {verdict_across.DECIDE:g}, else inconclusive; "
            "figures/critical_difference.png in the report).",
        ),
        ("table", scores),
    ]
    if across.left_out:
        blocks.append(
            (
                "p",
                "Left out (not run, or set aside as not learning, on every dataset): "
                f"{', '.join(across.left_out)}.",
            )
        )
    if across.warning:  # no posterior probabilities the method cannot stand behind
        blocks.append(("p", f"Warning: {across.warning}."))
    else:
        blocks.append(("table", pairs))
    blocks += [
        (
            "p",
            f"Mean ranks over {len(across.scores)} datasets (a description, not a test): {ranks}.",
        ),  # fmt: skip
    ]
    return blocks


def budget_blocks(
    df: pd.DataFrame,
    verdict: pd.DataFrame | None = None,
    settings: Mapping[str, Any] | None = None,
) -> list[Block]:
    """Per dataset with two or more label budgets: its learning curves as a table (mean
    accuracy over seeds and 95 % t-interval, a column per budget in increasing size), the
    crossovers in words (paired bootstrap per budget, ``settings``: the study's
    ``verdict`` section) and, from the verdict per budget, the outcome of the best
    pretrained cell against the best cell without pretrained weights at each budget."""

    if "budget" not in df:
        return []
    split = tables.reported_split(df)
    blocks: list[Block] = []
    for dataset, rows in df.groupby("dataset", sort=True):
        if rows["budget"].fillna(budget.ALL).nunique() < 2:
            continue
        curves = learning_curves.curve_table(rows, split)
        order = curves.groupby("budget")["per_class"].mean().sort_values().index
        names = {
            b: learning_curves.budget_words(
                b, curves.loc[curves["budget"] == b, "per_class"].mean()
            )
            for b in order
        }
        curves["text"] = [
            f"{a:.3f} [{lo:.3f}, {hi:.3f}]" if n > 1 else f"{a:.3f} (1 seed)"
            for a, lo, hi, n in zip(
                curves["accuracy"], curves["low"], curves["high"], curves["seeds"], strict=True
            )
        ]
        table = curves.pivot(index="cell", columns="budget", values="text")[list(order)]
        table = table.rename(columns=names).reset_index()
        val = rows["val_n"].dropna()
        blocks += [
            ("h3", f"Label budgets: {dataset}"),
            (
                "p",
                f"Mean {split} accuracy over seeds with its 95 % t-interval, per cell and "
                "label budget (labelled training images per class; stratified subsets of "
                "the training split drawn from each run's seed, nested within a seed, so the "
                "interval covers which images were labelled). Every budget was validated on "
                "the same "
                f"{int(val.iloc[0]) if len(val) else '?'} validation images and tested on the "
                "same test images.",
            ),
            ("table", table),
        ]
        aside = set_aside(rows)  # no crossover rests on a cell that did not learn
        left = sorted({"/".join(map(str, c)) for c in aside.cells[CELL[1:]].itertuples(False)})
        if left:
            blocks.append(
                (
                    "p",
                    "Set aside from the crossovers (a run did not learn at some budget: "
                    f"tlbench.analysis.set_aside): {', '.join(left)}.",
                )
            )
        lines = crossover_lines(paired_comparisons(aside.kept if left else rows, split, settings))
        bullets = [line[2:] for line in lines if line.startswith("* ")]
        blocks += [("p", line) for line in lines if line and not line.startswith("* ")]
        blocks += [("ul", bullets)] if bullets else []
        if verdict is not None and "budget" in verdict:
            gains = verdict[(verdict["dataset"] == dataset) & verdict["gain_verdict"].notna()]
            gains = gains[gains["gain_verdict"].astype(str) != ""]
            if len(gains):
                said = {
                    word: [names.get(str(b), str(b)) for b in gains.loc[
                        gains["gain_verdict"] == word, "budget"]]
                    for word in OUTCOMES
                }  # fmt: skip
                parts = [f"{word} at {', '.join(b)}" for word, b in said.items() if b]
                blocks.append(
                    (
                        "p",
                        "Transfer gain (the best pretrained cell chosen by validation against "
                        "the best cell without pretrained weights, paired bootstrap interval "
                        f"against the ±margin): {'; '.join(parts)}.",
                    )
                )
    return blocks


def study_section(
    df: pd.DataFrame,
    study: Mapping[str, Any],
    looks: Mapping[str, Any] | None = None,
    verdict: pd.DataFrame | None = None,
    scores: pd.DataFrame | None = None,
    tau: pd.DataFrame | None = None,
    ranking: pd.DataFrame | None = None,
    settings: Mapping[str, Any] | None = None,
    comparisons: pd.DataFrame | None = None,
) -> tuple[list[Block], dict[str, Any]]:
    """A measured study's section (blocks, :func:`tlbench.report.pages.results.to_markdown`) and
    its summary. ``study``: the config's ``results_section`` block (``page``,
    ``title``) plus ``config`` and ``results`` (where it ran). ``ranking``: the strategy
    ranking, for the comparison across datasets; ``comparisons``: the same ranking, for
    each cell against the chosen one with its cost (:func:`comparison_blocks`)."""
    wall = wall_time(df)
    blocks: list[Block] = [("h2", study["title"])]
    header, evaluations = study_header(df, study, wall, looks)
    blocks += header
    if verdict is not None and len(verdict):
        blocks += verdict_blocks(verdict)
    if comparisons is not None:
        blocks += comparison_blocks(comparisons)
    if ranking is not None:
        margins = verdict["margin"].dropna() if verdict is not None and "margin" in verdict else []
        blocks += across_blocks(ranking, float(margins.iloc[0]) if len(margins) else MARGIN)
    budgets = budget_blocks(df, verdict, settings)
    blocks += budgets
    ranked = scores_rank_backbones(scores)
    if not budgets and not ranked:  # the budget and score tables show the cells
        blocks += cells_blocks(df)
    if ranked:
        blocks += transferability_blocks(scores, tau, df)
    summary: dict[str, Any] = {
        "section": Path(study["page"]).stem,
        "page": str(study["page"]),
        "title": study["title"],
        "config": study["config"],
        "runs": len(df),
        "wall_seconds": wall["seconds"],
        "wall_time": format_seconds(wall["seconds"]),
        "machine": machine_text(df),
    }
    if evaluations is not None:
        summary["test_evaluations"] = evaluations
        summary["test_looks"] = {
            **looks,
            "earlier_test_looks": dict(study.get("earlier_test_looks") or {}),
        }
    return blocks, summary
