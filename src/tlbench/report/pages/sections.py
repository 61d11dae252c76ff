"""A measured study's section of the results page, from its evidence alone
(:mod:`tlbench.analysis.evidence`).

The workflow's rules ``seed_results`` and ``study_results`` and ``make results-pages``
(:mod:`tlbench.study.results_pages`) call :func:`write_section`, so the committed page is
what the committed evidence gives: the verdict, its ranking and the pairwise and
BatchNorm tables are computed again from the predictions the evidence holds, with the
settings of the study's config (``verdict``: margin, bootstrap replicates and seed).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from tlbench.analysis import tables
from tlbench.analysis.evidence import Evidence, read_evidence
from tlbench.analysis.set_aside import set_aside
from tlbench.analysis.verdict import pairs
from tlbench.analysis.verdict.answer import DEFAULT_COST
from tlbench.core.atomic import atomic_file, write_json
from tlbench.report.pages import results, seeds, studies
from tlbench.report.pages.results import Block
from tlbench.report.pages.verdict import write_verdict


def is_seed_section(study: Mapping[str, Any]) -> bool:
    """Whether ``study`` (a section's block plus where it ran) is a seed study's:
    a ``seed_study`` block names the seed report it reproduces (``reference``)."""
    return "reference" in study


def verdict_tables(
    evidence: Evidence, settings: Mapping[str, Any], folder: Path
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The verdict table and the strategy ranking of the evidence's runs, written into
    ``folder`` and read back as the section reads them (``tables/verdict.csv``), with the
    study's verdict settings (margin, replicates, seed and the cost that names the
    cheapest cell, as the report's verdict has them)."""
    write_verdict(
        evidence.study,
        folder / "verdict",
        folder / "strategy_ranking",
        folder / "front.rst",
        margin=settings["margin"],
        reps=settings["reps"],
        seed=settings["seed"],
        cost=settings.get("cost", DEFAULT_COST),
    )
    return pd.read_csv(folder / "verdict.csv"), pd.read_csv(folder / "strategy_ranking.csv")


def section_blocks(
    evidence: Evidence,
    study: Mapping[str, Any],
    settings: Mapping[str, Any],
    folder: Path,
) -> tuple[list[Block], dict[str, Any]]:
    """The section (blocks, :func:`tlbench.report.pages.results.to_markdown`) and its
    summary: a seed study's (:func:`tlbench.report.pages.seeds.seed_section`) or another
    measured study's (:func:`tlbench.report.pages.studies.study_section`)."""
    df = evidence.study
    verdict, ranking = verdict_tables(evidence, settings, folder)
    if not is_seed_section(study):
        return studies.study_section(
            df,
            study,
            looks=evidence.looks,
            verdict=verdict,
            scores=evidence.tables.get("transferability"),
            tau=evidence.tables.get("transferability_tau"),
            ranking=ranking if evidence.meta.get("ranking") else None,
            settings=dict(settings),
            comparisons=ranking,
        )
    batchnorm = pairwise = None
    if not tables.is_pilot(df):  # a pilot run has no test predictions to compare
        # one read of the predictions and one bootstrap per dataset serve both tables;
        # runs that did not learn are compared with nothing (shown in the verdict table)
        kept = set_aside(df).kept
        boots = pairs.dataset_bootstraps(kept, reps=settings["reps"], seed=settings["seed"])
        batchnorm = pairs.batchnorm_table(kept, margin=settings["margin"], bootstraps=boots)
        pairwise = pairs.pairwise_table(kept, margin=settings["margin"], bootstraps=boots)
    return seeds.seed_section(
        df, study, looks=evidence.looks, verdict=verdict, batchnorm=batchnorm, pairwise=pairwise
    )


def write_section(
    evidence_file: str | os.PathLike,
    study: Mapping[str, Any],
    settings: Mapping[str, Any],
    md: str | os.PathLike,
    summary_json: str | os.PathLike,
    html: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Write a section (Markdown, its summary JSON, and HTML when asked) from its
    evidence file (atomically); return the summary."""
    with tempfile.TemporaryDirectory(prefix="tlbench-evidence-") as tmp:
        evidence = read_evidence(evidence_file, Path(tmp) / "evidence")
        verdict_folder = Path(tmp) / "tables"
        verdict_folder.mkdir()
        blocks, summary = section_blocks(evidence, study, settings, verdict_folder)
    with atomic_file(md) as handle:
        handle.write(results.to_markdown(blocks))
    if html is not None:
        with atomic_file(html) as handle:
            handle.write(results.to_html(blocks))
    write_json(summary_json, summary)
    return summary
