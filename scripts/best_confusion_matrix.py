"""Snakemake script: the test confusion matrix of one dataset's best run."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to

with log_to(snakemake.log[0]):
    from tlbench.report.figures import runs

    runs.best_confusion_matrix(
        snakemake.input.study, snakemake.wildcards.dataset, snakemake.output[0]
    )
