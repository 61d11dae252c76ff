"""Snakemake script: per dataset, how many distinct run specs were evaluated on its test split.

Read from the study's append-only ledger (params.ledger, tlbench.analysis.ledger); every
run folder is an input, so the table follows the last run. A pilot study's
ledger gets no lines: the table then says 0 for every dataset.
"""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to, table_stem

with log_to(snakemake.log[0]):
    from tlbench.analysis import ledger
    from tlbench.report import render

    table = ledger.looks(snakemake.params.ledger, list(snakemake.params.datasets))
    render.write_table(table, table_stem(snakemake.output))
