"""Snakemake script: the table of all trials of one search (CSV, Markdown, HTML)."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to, table_stem

with log_to(snakemake.log[0]):
    from tlbench.report import render
    from tlbench.tuning import trials

    render.write_table(trials.trials_table(snakemake.input[0]), table_stem(snakemake.output))
