"""Snakemake script: one dataset's learning curves over label budgets (figure, page, table)."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to, table_stem

with log_to(snakemake.log[0]):
    import pandas as pd

    from tlbench.report.pages.learning_curves import write_learning_curves

    write_learning_curves(
        pd.read_csv(snakemake.input.study),
        snakemake.wildcards.dataset,
        snakemake.output.figure,
        snakemake.output.page,
        table_stem(snakemake.output),
        settings=dict(snakemake.params.verdict),
    )
