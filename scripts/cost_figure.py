"""Snakemake script: one dataset's test accuracy against each cost, coloured by verdict."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to

with log_to(snakemake.log[0]):
    import pandas as pd

    from tlbench.report.figures.cost import cost_figure

    ranking = pd.read_csv(snakemake.input.ranking)
    cost_figure(ranking, snakemake.wildcards.dataset, snakemake.output[0])
