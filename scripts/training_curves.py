"""Snakemake script: one run's training curves (loss and accuracy per epoch, per phase)."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.study import log_to

with log_to(snakemake.log[0]):
    from tlbench import plots

    plots.training_curves(snakemake.input[0], snakemake.output[0])
