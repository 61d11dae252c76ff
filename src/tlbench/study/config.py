"""Study config validation: the schema, its defaults, and the checks it cannot express.

Split out of :mod:`tlbench.study`, whose :func:`~tlbench.study.load.load_study` runs
:func:`validate_config` and the ``_check_*`` functions here in turn (no Keras import:
the parse-time check stays light). Errors are :class:`StudyConfigError`, naming the key
path of every problem.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from tlbench.analysis.transferability.scores import SCORES
from tlbench.core.errors import SpecError, StudyConfigError, TuningError, number_hint
from tlbench.datasets.base import class_count
from tlbench.datasets.budget import ALL as BUDGET_ALL
from tlbench.datasets.budget import BudgetError, check_budget
from tlbench.datasets.budget import label as budget_label
from tlbench.models.backbones.hub_presets import preset_backbone
from tlbench.tuning.space import resolve_tuning

SCHEMA_PATH = Path(__file__).with_name("schemas") / "config.schema.yaml"
NAME_PATTERN = r"[A-Za-z0-9_]+"
SECTIONS = ("datasets", "backbones", "strategies", "augmentations")


@functools.cache
def load_schema() -> dict[str, Any]:
    """The study config's JSON schema (a YAML file shipped with the package)."""
    with open(SCHEMA_PATH) as handle:
        return yaml.safe_load(handle)


def validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``config`` against the schema; return a deep copy with defaults filled in."""
    schema = load_schema()
    validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.path])
    if errors:
        lines = [_format_error(error, schema) for error in errors]
        raise StudyConfigError("invalid study config:\n  " + "\n  ".join(lines))
    resolved = copy.deepcopy(dict(config))
    props = schema["properties"]
    for key in ("results", "data_mirror", "seeds", "pilot"):
        resolved.setdefault(key, copy.deepcopy(props[key]["default"]))
    resolved["training"] = {**props["training"]["default"], **resolved.get("training", {})}
    resources = {k: v["default"] for k, v in props["resources"]["properties"].items()}
    resolved["resources"] = {**resources, **resolved.get("resources", {})}
    verdict = {k: v["default"] for k, v in props["verdict"]["properties"].items()}
    resolved["verdict"] = {**verdict, **resolved.get("verdict", {})}
    selection = {k: v["default"] for k, v in props["selection"]["properties"].items()}
    resolved["selection"] = {**selection, **resolved.get("selection", {})}
    _monitor_selection(resolved, given=config.get("training", {}))
    resolved["backbones"] = {
        name: _preset_entry(name, entry) for name, entry in resolved["backbones"].items()
    }
    return resolved


def monitor_of(metric: str) -> str | None:
    """The early-stopping monitor of ``selection.metric`` (None for ``auto``: the
    training sections' own, ``val_accuracy`` by default)."""
    return None if metric == "auto" else f"val_{metric}"


def _monitor_selection(resolved: dict[str, Any], given: Mapping[str, Any]) -> None:
    """``selection.metric`` other than auto: every ``early_stopping`` section that names
    no monitor (the default one included) monitors the validation figure of the metric."""
    monitor = monitor_of(resolved["selection"]["metric"])
    if monitor is None:
        return
    sections = [resolved["training"]]
    sections += [s.get("training", {}) for s in resolved["strategies"].values()]
    sections += [block.get("training", {}) for block in resolved["matrix"]]
    for index, training in enumerate(sections):
        stop = training.get("early_stopping")
        default = index == 0 and "early_stopping" not in given  # the schema's default
        if isinstance(stop, dict) and (default or "monitor" not in stop):
            training["early_stopping"] = {**stop, "monitor": monitor}


def _preset_entry(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """A ``{preset: ...}`` backbone as the registry's ``{name: keras_hub, ...}`` (its
    preset, weights and kwargs checked here); other entries as they are."""
    if "preset" not in entry:
        return entry
    try:
        return preset_backbone(entry, f"backbones.{name}")
    except SpecError as error:
        raise StudyConfigError(f"invalid study config:\n  {error}") from None


def key_path(path: Iterator[Any] | Any) -> str:
    """Format a JSON path as ``training.schedule.name`` / ``matrix[0].datasets[1]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<config>"


def _format_error(error: ValidationError, schema: dict[str, Any]) -> str:
    """One line naming the key path, the bad value and what would be valid."""
    where = key_path(error.absolute_path)
    kind, value, rule = error.validator, error.instance, error.validator_value
    if kind in ("oneOf", "anyOf") and error.context:
        # keep the branch whose type matched, explain what is wrong inside it
        inner = [e for e in error.context if not (e.validator == "type" and not e.path)]
        if inner:
            return _format_error(max(inner, key=lambda e: len(e.path)), schema)
        types = [b.get("type") for b in rule if "type" in b]
        return f"{where}: {value!r} has the wrong type; expected one of: {', '.join(types)}"
    if kind == "enum":
        return f"{where}: {value!r} is not valid; allowed values: {', '.join(map(str, rule))}"
    if kind in ("additionalProperties", "unevaluatedProperties"):
        valid = _property_names(error.schema, schema)
        unknown = sorted(set(value) - valid)
        return (
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"valid keys: {', '.join(sorted(valid))}"
        )
    if kind == "required":
        missing = [k for k in rule if k not in value]
        prefix = f"{where}." if error.absolute_path else ""
        return "; ".join(f"{prefix}{k}: missing (required)" for k in missing)
    if kind == "pattern" and rule.startswith("^docs/"):
        return f"{where}: {value!r} does not match {rule} (a page of its own under docs/results/)"
    if kind == "pattern":
        return f"{where}: {value!r} is not a valid name (use letters, digits and _ only)"
    if kind == "uniqueItems":
        dupes = sorted({str(v) for v in value if value.count(v) > 1})
        return f"{where}: repeated entries: {', '.join(dupes)}"
    if kind == "type":
        return f"{where}: {error.message}{number_hint(value)}"
    return f"{where}: {error.message}"


def _property_names(subschema: dict[str, Any], root: dict[str, Any]) -> set[str]:
    """All property names a (sub)schema allows, following local ``$ref``s."""
    names = set(subschema.get("properties", {}))
    ref = subschema.get("$ref")
    if ref and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        names |= _property_names(target, root)
    return names


def check_names(config: dict[str, Any]) -> None:
    """Cross-checks the schema cannot express: safe section names, names used exist."""
    problems = []
    for section in SECTIONS:
        for name in config[section]:
            if not re.fullmatch(NAME_PATTERN, name):
                problems.append(
                    f"{section}.{name}: {name!r} is not a valid name: names become "
                    "folder names and wildcards, use letters, digits and _ only"
                )
    for index, block in enumerate(config["matrix"]):
        for section in SECTIONS:
            for pos, name in enumerate(block[section]):
                if name not in config[section]:
                    problems.append(
                        _unknown(f"matrix[{index}].{section}[{pos}]", name, section, config)
                    )
    for name, backbone in config["backbones"].items():
        pretrain = pretrain_config(backbone)
        if pretrain is None:
            continue
        where = f"backbones.{name}.weights.pretrain"
        if pretrain["dataset"] not in config["datasets"]:
            problems.append(_unknown(f"{where}.dataset", pretrain["dataset"], "datasets", config))
        aug = pretrain.get("augmentation")
        if aug is not None and aug not in config["augmentations"]:
            problems.append(_unknown(f"{where}.augmentation", aug, "augmentations", config))
    if problems:
        raise StudyConfigError("invalid study config:\n  " + "\n  ".join(problems))


def check_budgets(config: dict[str, Any]) -> None:
    """Every dataset's ``budgets`` (tlbench.datasets.budget), replaced by their labels; errors name
    the key path. Label budgets and tuned strategies do not mix (a search per budget is
    not implemented): their blocks are an error."""
    problems = []
    for name, entry in config["datasets"].items():
        if "budgets" not in entry:
            continue
        labels: dict[str, int] = {}
        for pos, value in enumerate(entry["budgets"]):
            where = f"datasets.{name}.budgets[{pos}]"
            try:
                text = budget_label(check_budget(value, where))
            except BudgetError as error:
                problems.append(str(error))
                continue
            if text in labels:
                problems.append(
                    f"{where}: {value!r} repeats budget {text} of "
                    f"datasets.{name}.budgets[{labels[text]}]"
                )
            labels.setdefault(text, pos)
        entry["budgets"] = list(labels)
    for index, block in enumerate(config["matrix"]):
        budgeted = [
            d
            for d in block["datasets"]
            if config["datasets"][d].get("budgets", [BUDGET_ALL]) != [BUDGET_ALL]
        ]
        tuned = [s for s in block["strategies"] if "tuning" in config["strategies"][s]]
        if budgeted and tuned:
            problems.append(
                f"matrix[{index}]: tuned strateg{'ies' if len(tuned) > 1 else 'y'} "
                f"{', '.join(tuned)} on dataset(s) with label budgets ({', '.join(budgeted)}): "
                "a search per budget is not supported; put them in separate blocks "
                "without budgets"
            )
    if problems:
        raise StudyConfigError("invalid study config:\n  " + "\n  ".join(problems))


def check_tuning(config: dict[str, Any]) -> None:
    """Validate and fill every strategy's ``tuning`` section (tlbench.tuning); its
    ``metric`` (the objective) is the study's ``selection.metric`` unless it names one."""

    problems = []
    metric = config["selection"]["metric"]
    for name, strategy in config["strategies"].items():
        if "tuning" not in strategy:
            continue
        try:
            where = f"strategies.{name}.tuning"
            section = dict(strategy["tuning"])
            if metric != "auto":  # the study's selection.metric, unless the section names one
                section.setdefault("metric", metric)
            strategy["tuning"] = resolve_tuning(strategy["name"], section, where)
        except TuningError as error:
            problems.append(str(error))
    if problems:
        raise StudyConfigError("invalid study config:\n  " + "\n  ".join(problems))


def check_sections(config: dict[str, Any]) -> None:
    """A study has at most one section of the results page: a seed study's (``seed_study``)
    or its own (``results_section``); its ``earlier_test_looks`` name datasets of the config."""
    if "seed_study" in config and "results_section" in config:
        raise StudyConfigError(
            "invalid study config:\n  results_section: a seed study (seed_study: "
            f"{config['seed_study'].get('reference')!r}) has its section already; give one of "
            "seed_study and results_section"
        )
    for block in ("seed_study", "results_section"):
        earlier = (config.get(block) or {}).get("earlier_test_looks") or {}
        unknown = [name for name in earlier if name not in config["datasets"]]
        if unknown:
            raise StudyConfigError(
                f"invalid study config:\n  {block}.earlier_test_looks: {', '.join(unknown)} "
                f"is not a dataset of this config; valid: {', '.join(config['datasets'])}"
            )


def check_prescreen(config: dict[str, Any]) -> None:
    """Each block's ``prescreen``: a known score, ``keep`` at most the block's backbones,
    and only backbones whose weights have an identity (pretrained, or ``{random: SEED}``;
    ``none`` is drawn from each run's seed and has no features to score)."""

    problems = []
    for index, block in enumerate(config["matrix"]):
        screen = block.get("prescreen")
        if screen is None:
            continue
        where = f"matrix[{index}].prescreen"
        if screen["score"] not in SCORES:
            problems.append(
                f"{where}.score: {screen['score']!r} is not a transferability score; "
                f"valid: {', '.join(SCORES)}"
            )
        screen["keep"] = int(screen["keep"])  # the schema's integer may be 2.0
        backbones = block["backbones"]
        if screen["keep"] > len(backbones):
            problems.append(
                f"{where}.keep: {screen['keep']} is more than the block's "
                f"{len(backbones)} backbone(s) (matrix[{index}].backbones)"
            )
        for pos, name in enumerate(backbones):
            if config["backbones"][name].get("weights", "none") == "none":
                problems.append(
                    f"matrix[{index}].backbones[{pos}]: {name!r} has random weights "
                    f"(backbones.{name}.weights: none): nothing to score for {where}"
                )
    if problems:
        raise StudyConfigError("invalid study config:\n  " + "\n  ".join(problems))


def check_selection(
    config: dict[str, Any], dataset_config: Callable[[str], dict[str, Any]]
) -> None:
    """``selection.metric: roc_auc`` needs two classes: an error naming every dataset whose
    options say it has more (``dataset_config(name)``: the config its loader takes; a
    folder's classes are known only once prepared: the selection errors there)."""
    if config["selection"]["metric"] != "roc_auc":
        return
    problems = []
    for name in config["datasets"]:
        try:
            count = class_count(dataset_config(name))
        except (ValueError, KeyError):
            continue  # a bad dataset entry: its own check names it
        if count is not None and count != 2:
            problems.append(
                f"selection.metric: 'roc_auc' is for two-class datasets; datasets.{name} "
                f"has {count} classes (use balanced_accuracy, macro_f1 or accuracy)"
            )
    if problems:
        raise StudyConfigError("invalid study config:\n  " + "\n  ".join(problems))


def _unknown(where: str, name: str, section: str, config: dict[str, Any]) -> str:
    return (
        f"{where}: unknown name {name!r}; defined {section}: {', '.join(sorted(config[section]))}"
    )


def pretrain_config(backbone: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``{pretrain: {...}}`` of a backbone's weights, or None (other weights)."""
    weights = backbone.get("weights")
    return weights.get("pretrain") if isinstance(weights, dict) else None
