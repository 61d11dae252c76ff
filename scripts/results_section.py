"""Snakemake script: a measured study's section of the results page, from its evidence
alone (tlbench.report.pages.sections; `make results-pages` calls the same)."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to

with log_to(snakemake.log[0]):
    from tlbench.report.pages.sections import write_section

    out = snakemake.output
    write_section(
        snakemake.input.evidence,
        dict(snakemake.params.study),
        dict(snakemake.params.verdict),
        out.md,
        out.json,
        out.html,
    )
