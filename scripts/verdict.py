"""Snakemake script: the verdict per dataset (tables/verdict.*), the strategy ranking
(tables/strategy_ranking.*) and the report's front section, from one bootstrap."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to, table_stem

with log_to(snakemake.log[0]):
    import pandas as pd

    from tlbench.report.pages import verdict

    settings = snakemake.params.verdict
    out = snakemake.output
    verdict.write_verdict(
        pd.read_csv(snakemake.input.study),
        table_stem(out),
        table_stem({f: getattr(out, f"ranking_{f}") for f in ("csv", "md", "html")}),
        out.front,
        margin=settings["margin"],
        reps=settings["reps"],
        seed=settings["seed"],
        figure_path=out.answer,
        cost=settings["cost"],
    )
