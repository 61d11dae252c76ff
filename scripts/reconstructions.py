"""Snakemake script: autoencoder reconstructions after each stage, for one dataset's autoencoder runs."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to

with log_to(snakemake.log[0]):
    from tlbench.report.figures import runs

    runs.reconstructions(list(snakemake.input.runs), snakemake.output[0])
