"""Snakemake script: the verdict per dataset (tables/verdict.*) and the report's front section."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.study import log_to, table_stem

with log_to(snakemake.log[0]):
    import pandas as pd

    from tlbench import verdict

    settings = snakemake.params.verdict
    verdict.write_verdict(
        pd.read_csv(snakemake.input.study),
        table_stem(snakemake.output),
        snakemake.output.front,
        margin=settings["margin"],
        reps=settings["reps"],
        seed=settings["seed"],
    )
