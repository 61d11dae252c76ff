"""Snakemake script: each score's weighted Kendall tau against the measured accuracies,
and the scatter figure of scores against test accuracy."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to, table_stem

with log_to(snakemake.log[0]):
    import pandas as pd

    from tlbench.analysis.transferability import tau as transferability_tau
    from tlbench.report import render
    from tlbench.report.figures import transferability as figures_transferability

    scores = pd.read_csv(snakemake.input.scores)
    study = pd.read_csv(snakemake.input.study)
    tau = transferability_tau.tau_table(scores, study)
    render.write_table(tau, table_stem(snakemake.output))
    figures_transferability.tau_scatter(scores, study, snakemake.output.figure, tau=tau)
