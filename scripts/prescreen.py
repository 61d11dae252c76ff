"""Snakemake script: a prescreened block's backbones ranked by a score, the best kept."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to, table_stem

with log_to(snakemake.log[0]):
    from tlbench.analysis import tables
    from tlbench.analysis.transferability import scores as transferability

    screen = snakemake.params.prescreen
    scores = transferability.scores_table(snakemake.input)
    table = transferability.prescreen(scores, screen["score"], screen["keep"])
    print(table.to_string())
    tables.write_table(table, table_stem(snakemake.output))
