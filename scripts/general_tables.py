"""Snakemake script: one dataset's general table (mean ± sd over seeds per configuration)."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to, table_stem

with log_to(snakemake.log[0]):
    import pandas as pd

    from tlbench.analysis import tables
    from tlbench.report import render

    study = pd.read_csv(snakemake.input[0])
    table = tables.general_table(study, snakemake.wildcards.dataset)
    render.write_table(table, table_stem(snakemake.output))
