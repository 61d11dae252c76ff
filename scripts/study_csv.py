"""Snakemake script: every run's metrics.json, one row per run, in the study table,
with the study's ``selection.metric`` (what chooses, tlbench.analysis.selection)."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to, table_stem

with log_to(snakemake.log[0]):
    from tlbench.analysis import runs
    from tlbench.analysis.criteria import with_metric
    from tlbench.report import render

    metrics = [f"{run}/metrics.json" for run in snakemake.input]
    table = with_metric(runs.collect_runs(metrics), snakemake.params.selection)
    render.write_table(table, table_stem(snakemake.output))
