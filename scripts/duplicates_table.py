"""Snakemake script: one dataset's duplicates table (counts per pair of splits)."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to, table_stem

with log_to(snakemake.log[0]):
    from tlbench.analysis.duplicates import duplicate_table
    from tlbench.report import render

    render.write_table(duplicate_table(snakemake.input[0]), table_stem(snakemake.output))
