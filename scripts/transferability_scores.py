"""Snakemake script: transferability scores of one (dataset, backbone) on one label budget's
training images: its feature cache and, for a backbone pretrained by a run, that run's
classifier."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import limit_threads, log_to

limit_threads(snakemake.threads)
with log_to(snakemake.log[0]):
    from tlbench.analysis.transferability import cache
    from tlbench.core.atomic import write_json

    record = cache.score_cache(
        snakemake.input.features,
        snakemake.input.prepared,
        dict(snakemake.wildcards),
        snakemake.input.get("pretrained"),  # the pretraining run, if any: NCE, LEEP
        batch_size=snakemake.params.batch_size,
        budget=snakemake.params.budget,  # a label budget's training images, or all
        seeds=snakemake.params.get("seeds", (0,)),  # a budget: its runs' seeds, one subset each
    )
    print(record)
    write_json(snakemake.output[0], record)
