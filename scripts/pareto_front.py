"""Snakemake script: test accuracy against training time of one dataset's runs, Pareto front marked."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to

with log_to(snakemake.log[0]):
    from tlbench.report.figures import study

    study.pareto_front(snakemake.input.study, snakemake.wildcards.dataset, snakemake.output[0])
