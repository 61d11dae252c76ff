"""Snakemake script: the environment page (versions, hardware, git commit, study config)."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to

with log_to(snakemake.log[0]):
    from tlbench.report.pages.environment import environment_page

    environment_page(
        snakemake.params.config, snakemake.input[0], snakemake.output.yaml, snakemake.output.html
    )
