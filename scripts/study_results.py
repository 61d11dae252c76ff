"""Snakemake script: a measured study's own section of the results page (tlbench.report.pages.studies)."""
# ruff: noqa: F821  (``snakemake`` is injected by Snakemake)

import _bootstrap  # noqa: F401

from tlbench.workflow.jobs import log_to

with log_to(snakemake.log[0]):
    import pandas as pd

    from tlbench.analysis import ledger
    from tlbench.core.atomic import atomic_file, write_json
    from tlbench.report.pages import results, studies

    study = dict(snakemake.params.study)
    df = pd.read_csv(snakemake.input.csv)
    looks = ledger.looks(ledger.ledger_path(study["results"]), list(dict.fromkeys(df["dataset"])))
    inputs = dict(snakemake.input.items())
    blocks, summary = studies.study_section(
        df,
        study,
        looks=looks,
        verdict=pd.read_csv(inputs["verdict"]),
        scores=pd.read_csv(inputs["scores"]) if "scores" in inputs else None,
        tau=pd.read_csv(inputs["tau"]) if "tau" in inputs else None,
        ranking=pd.read_csv(inputs["ranking"]) if "ranking" in inputs else None,
        settings=dict(snakemake.params.verdict),
    )
    with atomic_file(snakemake.output.md) as handle:
        handle.write(results.to_markdown(blocks))
    with atomic_file(snakemake.output.html) as handle:
        handle.write(results.to_html(blocks))
    write_json(snakemake.output.json, summary)
