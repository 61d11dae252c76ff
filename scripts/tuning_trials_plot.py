"""Snakemake script: validation score against each tuned hyperparameter of one search."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to

with log_to(snakemake.log[0]):
    import json

    from tlbench.report.figures import tuning as figures_tuning

    best = json.loads(open(snakemake.input.best).read())
    w = snakemake.wildcards
    figures_tuning.plot_trials(
        snakemake.input.trials,
        snakemake.output[0],
        title=f"{w.dataset} / {w.backbone} / {w.strategy} ({best['tuner']})",
        objective=best["objective"],
        space=best["tuning"]["space"],
    )
