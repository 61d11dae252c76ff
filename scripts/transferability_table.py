"""Snakemake script: the scores of every (dataset, backbone) in one table."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to, table_stem

with log_to(snakemake.log[0]):
    from tlbench.analysis.transferability import tau
    from tlbench.report import render

    table = tau.scores_table(snakemake.input)
    render.write_table(table, table_stem(snakemake.output))
