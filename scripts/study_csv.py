"""Snakemake script: every run's metrics.json, one row per run, in the study table."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to, table_stem

with log_to(snakemake.log[0]):
    from tlbench.analysis import runs
    from tlbench.report import render

    metrics = [f"{run}/metrics.json" for run in snakemake.input]
    render.write_table(runs.collect_runs(metrics), table_stem(snakemake.output))
