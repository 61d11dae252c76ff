"""Snakemake script: compute a frozen backbone's features of one prepared dataset."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import limit_threads, log_to

limit_threads(snakemake.threads)
with log_to(snakemake.log[0]):
    from tlbench.training import feature_cache

    feature_cache.compute(dict(snakemake.params.spec), snakemake.output[0])
