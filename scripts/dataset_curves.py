"""Snakemake script: the validation curves of all runs on one dataset in one figure."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to

with log_to(snakemake.log[0]):
    from tlbench.report.figures import study

    study.dataset_curves(list(snakemake.input.runs), snakemake.output[0])
