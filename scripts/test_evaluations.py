"""Snakemake script: per dataset, how many distinct run specs were evaluated on its test split.

Read from the study's append-only ledger (params.ledger, tlbench.analysis.ledger) and the
machine's (every study on this machine that evaluated the same test split; the study's
lines are folded into it first); every run folder is an input, so the table follows the
last run. A pilot study's ledger gets no lines: the table then counts the other studies'.
"""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to, table_stem

with log_to(snakemake.log[0]):
    from tlbench.analysis import lookcount
    from tlbench.report import render
    from tlbench.study.matrix import prepared_folder, results_folder

    results = results_folder(snakemake.config)
    prepared = {d: prepared_folder(results, d) for d in snakemake.params.datasets}
    table = lookcount.looks_table(lookcount.count_looks(snakemake.params.ledger, prepared))
    render.write_table(table, table_stem(snakemake.output))
