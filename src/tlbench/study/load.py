"""Reading a study: the config checked against its schema and every axis's names, expanded
into runs, every run spec resolved before any job starts (:func:`load_study`); the
values typed on Snakemake's command line (:func:`typed_cli_values`).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from typing import Any

import yaml

from tlbench.core.errors import SpecError, StudyConfigError
from tlbench.core.paths import relation
from tlbench.core.yaml_files import YAMLAliasError, load_yaml
from tlbench.datasets.base import OptionError, resolve_options
from tlbench.study.config import (
    check_budgets,
    check_names,
    check_prescreen,
    check_sections,
    check_selection,
    check_tuning,
    validate_config,
)
from tlbench.study.matrix import Study
from tlbench.study.runs import Run, expand_runs
from tlbench.training.resume import checkpoint_seconds
from tlbench.training.spec import resolve_spec


def load_study(config: Mapping[str, Any], *, check_specs: bool = True) -> Study:
    """Validate a study config, fill its defaults and expand its matrix into runs.

    With ``check_specs`` (the default) every dataset's loader options and every
    expanded run spec (and pretraining spec) are also validated, by the very
    functions the jobs use (:func:`tlbench.datasets.resolve_options`,
    :func:`tlbench.training.spec.resolve_spec`; this imports Keras for the registries), and so
    is the jobs' checkpoint interval (``TLBENCH_CHECKPOINT_SECONDS``,
    :func:`tlbench.training.resume.checkpoint_seconds`).
    Raises :class:`StudyConfigError` naming the key path of every problem.
    """
    resolved = validate_config(config)
    check_names(resolved)
    check_budgets(resolved)
    check_tuning(resolved)
    check_prescreen(resolved)
    check_sections(resolved)
    runs = expand_runs(resolved)
    study = Study(resolved, runs)
    check_selection(resolved, study.dataset_config)
    check_results_folder(study)
    if check_specs:
        _check_specs(study)
        try:
            checkpoint_seconds()
        except ValueError as error:
            raise StudyConfigError(str(error)) from None
    return study


def check_config_files(paths: list[str | os.PathLike]) -> None:
    """The study's config files (Snakemake's ``workflow.configfiles``) hold no YAML alias
    (:mod:`tlbench.core.yaml_files`); else :class:`StudyConfigError` naming file and line."""
    for path in paths:
        try:
            load_yaml(path)
        except YAMLAliasError as error:
            raise StudyConfigError(f"invalid study config: {error}") from None


def check_results_folder(study: Study) -> None:
    """The results folder must stay apart from every dataset's source (a re-prepare would
    replace or read it) and must not be ``/`` or hold the project folder (the working
    directory); :class:`StudyConfigError` names both paths."""
    results, problems = study.results, []
    found = relation(results, os.getcwd())
    if found in ("equal to", "containing"):
        problems.append(
            f"results: {results!r} is {found} the project folder {os.getcwd()}; "
            "give a folder of its own (default: results)"
        )
    for name in study.config["datasets"]:
        source = study.dataset_config(name).get("source")
        found = relation(results, source) if source is not None else None
        if found is not None:
            problems.append(
                f"results: {results!r} is {found} datasets.{name}.source {source!r}; "
                "the study's outputs would replace or mix with the data"
            )
    if problems:
        raise StudyConfigError("invalid study config:\n  " + "\n  ".join(problems))


def load_study_file(path: str | os.PathLike) -> Study:
    """Read a YAML study config from ``path`` and load it (see :func:`load_study`)."""
    try:
        config = load_yaml(path)
    except YAMLAliasError as error:
        raise StudyConfigError(str(error)) from None
    if not isinstance(config, dict):
        raise StudyConfigError(f"{path}: a study config is a YAML mapping, got {config!r}")
    return load_study(config)


def typed_cli_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """``snakemake --config`` values with their nested strings read as YAML scalars.

    Snakemake parses ``--config seeds=[0,1]`` with YAML's BaseLoader, so every
    value inside a list or mapping is a string (``['0', '1']``); this reads those
    strings again as numbers, booleans or null where they read as such
    (``[0, 1]``). Top-level values (already typed by Snakemake, except booleans:
    Snakemake types only ``True``/``False``) are kept, but ``true``/``false``
    become booleans (``--config pilot=true``).
    """

    def typed(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: typed(v) for k, v in value.items()}
        if isinstance(value, list):
            return [typed(v) for v in value]
        if isinstance(value, str):
            for number in (int, float):
                with contextlib.suppress(ValueError):
                    return number(value)
            with contextlib.suppress(yaml.YAMLError):
                parsed = yaml.safe_load(value)
                if isinstance(parsed, bool) or parsed is None:
                    return parsed
        return value

    booleans = {"true": True, "false": False}
    return {
        key: typed(value)
        if isinstance(value, Mapping | list)
        else booleans.get(value, value)
        if isinstance(value, str)
        else value
        for key, value in values.items()
    }


_SPEC_PATH = re.compile(r"[A-Za-z_][\w.\[\]]*")


def _check_specs(study: Study) -> None:
    """Validate every dataset's options and every run's spec as the jobs will.

    Errors are re-addressed from the run spec's key (``strategy.params.unfreez``)
    to the study config's (``strategies.ft.params.unfreez``), naming one run.
    """

    problems: dict[str, str] = {}
    for name in study.config["datasets"]:
        try:
            resolve_options(study.dataset_config(name))
        except OptionError as error:
            where = f"datasets.{name}" + (f".{error.key}" if error.key else "")
            problems.setdefault(f"{where}: {error}", "")
        except ValueError as error:
            problems.setdefault(f"datasets.{name}: {error}", "")
    specs = [(run, study.run_spec(run)) for run in study.runs]
    specs += [(backbone, study.pretrain_spec(backbone)) for backbone in study.pretrained_backbones]
    for owner, spec in specs:
        try:
            resolve_spec(spec)
        except SpecError as error:
            path, _, rest = str(error).partition(": ")
            if not rest or not _SPEC_PATH.fullmatch(path):
                path, rest = "", str(error)
            if isinstance(owner, Run):
                where, what = _config_key(study, owner, path), f"run {owner}"
            else:
                where = f"backbones.{owner}.weights.pretrain" + (f" ({path})" if path else "")
                what = f"pretraining run of backbone {owner!r}"
            problems.setdefault(f"{where}: {rest}", f" (in the {what})")
    if problems:
        lines = [problem + context for problem, context in problems.items()]
        raise StudyConfigError("invalid study config:\n  " + "\n  ".join(lines))


def _config_key(study: Study, run: Run, path: str) -> str:
    """The study config's key path that sets a run spec's key ``path``."""
    head, _, rest = path.partition(".")
    tail = f".{rest}" if rest else ""
    strategy = f"strategies.{run.strategy}"
    if head == "strategy":
        return f"{strategy}{tail}"
    if head == "head":
        return f"{strategy}.head{tail}"
    if head == "backbone":
        return f"backbones.{run.backbone}{tail}"
    if head == "augmentation":
        return f"augmentations.{run.augmentation}{tail}"
    if head == "dataset":
        return f"datasets.{run.dataset}"
    if head == "seed":
        return (
            f"matrix[{run.block}].seeds"
            if "seeds" in study.config["matrix"][run.block]
            else "seeds"
        )
    if head == "training" and rest:
        key = rest.split(".", 1)[0]
        if key in study.config["matrix"][run.block].get("training", {}):
            return f"matrix[{run.block}].training.{rest}"
        if key in study.config["strategies"][run.strategy].get("training", {}):
            return f"{strategy}.training.{rest}"
        if key == "input_size" and "input_size" in study.config["backbones"][run.backbone]:
            return f"backbones.{run.backbone}.input_size"
        return f"training.{rest}"
    return path or f"run {run}"
