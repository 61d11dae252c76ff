"""Snakemake script: a measured study's evidence beside its section (tlbench.analysis.evidence)."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to

with log_to(snakemake.log[0]):
    import pandas as pd

    from tlbench.analysis import ledger
    from tlbench.analysis.evidence import write_evidence

    inputs = dict(snakemake.input.items())
    df = pd.read_csv(inputs["csv"])
    datasets = list(dict.fromkeys(df["dataset"]))
    write_evidence(
        snakemake.output[0],
        df,
        tables={
            name: pd.read_csv(inputs[name])
            for name in ("transferability", "transferability_tau")
            if name in inputs
        },  # fmt: skip
        looks=ledger.looks(ledger.ledger_path(snakemake.params.results), datasets),
        meta=dict(snakemake.params.meta),
    )
