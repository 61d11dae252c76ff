"""``make results-pages``: ``docs/results.md`` and every section that has committed
evidence (``docs/results/<name>.evidence.zip``, :mod:`tlbench.analysis.evidence`),
rebuilt from the evidence alone: no training, no results folder.

Each section's settings (its block of the config: title, substitutions, the seed it
reproduces; the verdict's margin, replicates and seed) are read again from the config
files and ``--config`` values the evidence names, so a change to a config's wording or to
how a verdict is computed reaches the page without a rerun. Usage::

    python -m tlbench.report.pages.results_pages [docs/results]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tlbench.analysis.evidence import SUFFIX, read_meta
from tlbench.core.atomic import atomic_file
from tlbench.core.yaml_files import load_yaml
from tlbench.report.pages import results
from tlbench.report.pages.sections import write_section
from tlbench.study.load import load_study, typed_cli_values


def merged(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``update``, nested mappings merged key by key (as Snakemake
    merges several ``--configfile``s and ``--config`` values)."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merged(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def section_settings(meta: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(study, verdict settings)`` of a section, from the config files and ``--config``
    values its evidence names (as the workflow's ``section_params`` gives them)."""
    config: dict[str, Any] = {}
    for path in meta["configs"]:
        loaded = load_yaml(path)
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a study config is a YAML mapping, got {loaded!r}")
        merged(config, loaded)
    merged(config, typed_cli_values(meta.get("cli_config") or {}))
    study = load_study(config, check_specs=False)
    block = study.seed_study or study.results_section
    if not block:
        raise ValueError(
            f"the config {', '.join(meta['configs'])} has no seed_study or results_section "
            "block: its evidence belongs to no section"
        )
    params = {**block, "config": ", ".join(meta["configs"]), "results": study.results}
    return params, dict(study.config["verdict"])


def rebuild(
    folder: str | Path = "docs/results", page: str | Path = "docs/results.md"
) -> list[Path]:
    """Rebuild each section of ``folder`` that has an evidence file (into ``folder``,
    under its page's name), then ``page``; return the files written. Config paths are
    read from the working directory (the project root)."""
    folder = Path(folder)
    written = []
    for evidence in sorted(folder.glob(f"*{SUFFIX}")):
        study, settings = section_settings(read_meta(evidence))
        md = folder / Path(study["page"]).name
        if md.stem + SUFFIX != evidence.name:
            raise ValueError(f"{evidence}: its config's section page is {study['page']}")
        write_section(evidence, study, settings, md, md.with_suffix(".json"))
        written += [md, md.with_suffix(".json")]
    with atomic_file(page) as handle:
        handle.write(results.page_from_files(sorted(folder.glob("*.json"))))
    return [*written, Path(page)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default="docs/results")
    parser.add_argument("--page", default="docs/results.md")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    written = rebuild(args.folder, args.page)
    print(f"{len(written)} files written in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
