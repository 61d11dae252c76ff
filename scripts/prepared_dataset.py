"""Snakemake script: prepare one dataset (decode, resize, split) into its folder."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import limit_threads, log_to

limit_threads(snakemake.threads)
with log_to(snakemake.log[0]):
    from tlbench.datasets import prepare

    prepare(
        dict(snakemake.params.config),
        snakemake.output[0],
        image_size=snakemake.params.image_size,
        seed=snakemake.params.seed,
    )
