"""Snakemake script: a grid of test images with the best run's predictions, for one dataset."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to

with log_to(snakemake.log[0]):
    from tlbench.report.figures import runs

    runs.prediction_grid(
        snakemake.input.study,
        snakemake.input.prepared,
        snakemake.wildcards.dataset,
        snakemake.output[0],
    )
