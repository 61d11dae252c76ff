"""Snakemake script: docs/results.md from every measured seed study's section."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to

with log_to(snakemake.log[0]):
    from tlbench.core.atomic import atomic_file
    from tlbench.report.pages import results_pages

    with atomic_file(snakemake.output[0]) as handle:
        handle.write(results_pages.page_from_files(snakemake.input))
