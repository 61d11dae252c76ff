"""Snakemake script: train and evaluate one run (also a backbone's pretraining run).

params.spec: the engine's run spec; params.names: the run's config-level names,
recorded in metrics.json as ``run``. Threads follow the job's ``threads``.
"""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.study import limit_threads, log_to

limit_threads(snakemake.threads)
with log_to(snakemake.log[0]):
    from tlbench import engine

    engine.run({**snakemake.params.spec, "run": dict(snakemake.params.names)}, snakemake.output[0])
