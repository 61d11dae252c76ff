"""Snakemake script: a seed study's section of the results page (tlbench.report.pages.seeds)."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to

with log_to(snakemake.log[0]):
    import pandas as pd

    from tlbench.analysis import ledger, tables
    from tlbench.analysis.set_aside import set_aside
    from tlbench.analysis.verdict import pairs
    from tlbench.core.atomic import atomic_file, write_json
    from tlbench.report.pages import results, seeds

    study = dict(snakemake.params.study)
    settings = snakemake.params.verdict
    df = pd.read_csv(snakemake.input.csv)
    looks = ledger.looks(ledger.ledger_path(study["results"]), list(dict.fromkeys(df["dataset"])))
    batchnorm = pairwise = None
    if not tables.is_pilot(df):  # a pilot run has no test predictions to compare
        # one read of the predictions and one bootstrap per dataset serve both tables
        # runs that did not learn are compared with nothing (shown in the verdict table)
        kept = set_aside(df).kept
        boots = pairs.dataset_bootstraps(kept, reps=settings["reps"], seed=settings["seed"])
        batchnorm = pairs.batchnorm_table(kept, margin=settings["margin"], bootstraps=boots)
        pairwise = pairs.pairwise_table(kept, margin=settings["margin"], bootstraps=boots)
    blocks, summary = seeds.seed_section(
        df,
        study,
        looks=looks,
        verdict=pd.read_csv(snakemake.input.verdict),
        batchnorm=batchnorm,
        pairwise=pairwise,
    )
    with atomic_file(snakemake.output.md) as handle:
        handle.write(results.to_markdown(blocks))
    with atomic_file(snakemake.output.html) as handle:
        handle.write(results.to_html(blocks))
    write_json(snakemake.output.json, summary)
