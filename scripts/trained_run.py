"""Snakemake script: train and evaluate one run (also a backbone's pretraining run).

params.spec: the engine's run spec; params.names: the run's config-level names,
recorded in metrics.json as ``run``. Threads follow the job's ``threads``.
input.tuned (tuned cells only): the search's best.json, applied to the spec
and recorded as ``tuned`` (tlbench.tuning.space.apply_tuned). A run that evaluated
the test split (not a pilot run) appends its line to the study's test-split
ledger, ``<results>/test_evaluations.jsonl`` (tlbench.analysis.ledger; the path comes
from the config, not a param, so that adding it reran no finished run), before the
run folder is committed: a failing write leaves no run folder.
"""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import limit_threads, log_to

limit_threads(snakemake.threads)
with log_to(snakemake.log[0]):
    from tlbench.training import engine

    spec = {**snakemake.params.spec, "run": dict(snakemake.params.names)}
    if hasattr(snakemake.input, "tuned"):  # the best values of the cell's search
        from tlbench.tuning.space import apply_tuned, read_tuned

        spec = apply_tuned(spec, read_tuned(snakemake.input.tuned))
    from tlbench.analysis import ledger
    from tlbench.study.matrix import results_folder

    path = ledger.ledger_path(results_folder(snakemake.config))
    # the ledger's line is written before the run folder is committed (engine.run)
    engine.run(spec, snakemake.output[0], before_commit=lambda m: ledger.record(path, m))
