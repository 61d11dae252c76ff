"""Snakemake script: every run's metrics, one row per run, in the study CSV."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.study import log_to

with log_to(snakemake.log[0]):
    from tlbench import tables

    tables.write_table(tables.collect_runs(list(snakemake.input)), snakemake.output[0])
