"""Snakemake script: finished runs that look like a pipeline bug, with the reason."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to, table_stem

with log_to(snakemake.log[0]):
    import pandas as pd

    from tlbench.analysis import tables
    from tlbench.report import render

    table = tables.flag_suspicious(pd.read_csv(snakemake.input[0]))
    render.write_table(table, table_stem(snakemake.output))
