"""Snakemake script: a prescreened block's backbones ranked by a score, the best kept."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to, table_stem

with log_to(snakemake.log[0]):
    from tlbench.analysis.transferability import prescreen, tau
    from tlbench.report import render

    screen = snakemake.params.prescreen
    scores = tau.scores_table(snakemake.input)
    table = prescreen.prescreen(scores, screen["score"], screen["keep"])
    print(table.to_string())
    render.write_table(table, table_stem(snakemake.output))
