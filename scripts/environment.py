"""Snakemake script: the environment page (versions, hardware, git commit, study config)."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.study import log_to

with log_to(snakemake.log[0]):
    from tlbench import report

    report.environment_page(
        dict(snakemake.params.config), snakemake.output.yaml, snakemake.output.html
    )
