"""Snakemake script: the strategies compared across datasets (baycomp's posterior per pair)."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to

with log_to(snakemake.log[0]):
    from tlbench.report.figures import verdict

    margin = snakemake.params.verdict["margin"]
    verdict.critical_difference(snakemake.input[0], snakemake.output[0], margin)
