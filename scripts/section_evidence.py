"""Snakemake script: a measured study's evidence beside its section (tlbench.analysis.evidence)."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to

with log_to(snakemake.log[0]):
    import pandas as pd

    from tlbench.analysis import ledger, lookcount
    from tlbench.analysis.evidence import write_evidence
    from tlbench.study.matrix import prepared_folder

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
        # the looks at each dataset's test split by every study on this machine
        looks=lookcount.count_looks(
            ledger.ledger_path(snakemake.params.results),
            {d: prepared_folder(snakemake.params.results, d) for d in datasets},
        ),
        meta=dict(snakemake.params.meta),
    )
