"""Snakemake script: every cell of a dataset on one list, in validation order, with
its test accuracy's interval and the verdict against the validation-selected cell."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.study import log_to, table_stem

with log_to(snakemake.log[0]):
    import pandas as pd

    from tlbench import tables, verdict

    settings = snakemake.params.verdict
    study = pd.read_csv(snakemake.input.study)
    if tables.is_pilot(study):  # test split sealed: validation figures, no test intervals
        table = tables.strategy_ranking(study)
    else:
        cells = verdict.cell_table(
            study, margin=settings["margin"], reps=settings["reps"], seed=settings["seed"]
        )
        table = verdict.ranking(cells)
    tables.write_table(table, table_stem(snakemake.output))
