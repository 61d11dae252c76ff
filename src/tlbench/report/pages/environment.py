"""The study's environment page: this machine, the environments the runs were trained in,
and the study config, as YAML and as a page of the report.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from typing import Any

import pandas as pd
import yaml

from tlbench.analysis import tables
from tlbench.core import provenance
from tlbench.core.atomic import atomic_file
from tlbench.report import render


def environment_page(
    config: Mapping[str, Any],
    study_csv: str | os.PathLike,
    yaml_path: str | os.PathLike,
    html_path: str | os.PathLike,
) -> None:
    """Write the study's environment page: this machine, the runs' environments, the config.

    ``yaml_path`` gets ``{environment, run_environments, config}``; ``html_path``
    the same as a page of the report (tables plus the config as YAML).
    """

    here = provenance.environment()
    runs = tables.environment_table(pd.read_csv(study_csv))
    config_yaml = yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True)
    with atomic_file(yaml_path) as handle:
        yaml.safe_dump(
            {
                "environment": here,
                "run_environments": runs.to_dict(orient="records"),
                "config": dict(config),
            },
            handle,
            sort_keys=False,
            allow_unicode=True,
        )
    machine = pd.DataFrame({"field": list(here), "value": [str(v) for v in here.values()]})
    page = "\n".join(
        [
            "<!DOCTYPE html>",
            '<html><head><meta charset="utf-8"><title>Environment</title>',
            "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}</style></head><body>",
            "<h2>Environment of the report's aggregation</h2>",
            render.render(machine, "html"),
            "<h2>Environments the runs were trained in</h2>",
            render.render(runs, "html"),
            "<h2>Study config (defaults filled in)</h2>",
            f"<pre>{html.escape(config_yaml)}</pre>",
            "</body></html>",
        ]
    )
    with atomic_file(html_path) as handle:
        handle.write(page + "\n")
