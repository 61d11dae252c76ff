"""Snakemake script: the keras-tuner search of one tuned cell (dataset, backbone, strategy).

params.spec: the cell's run spec; params.tuning: the strategy's tuning section;
params.workdir: the oracle's folder (resumable); params.names: the wildcards.
Writes output.best (best.json) and output.trials (trials.csv).
"""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import limit_threads, log_to

limit_threads(snakemake.threads)
with log_to(snakemake.log[0]):
    from tlbench.tuning import search

    names = dict(snakemake.params.names)
    search.search(
        snakemake.params.spec,
        snakemake.params.tuning,
        snakemake.params.workdir,
        snakemake.output.best,
        snakemake.output.trials,
        names=names,
        where=f"strategies.{names['strategy']}.tuning",
    )
