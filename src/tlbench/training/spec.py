"""Run spec: the input of ``tlbench run SPEC.yaml OUTDIR`` (one cell of the study matrix).

A run spec is a YAML file (or a dict). :func:`resolve_spec` fills every
default, validates every value and returns the fully resolved spec, a plain
dict that is copied into ``metrics.json``. Unknown keys at any level are an
error naming the key path and the valid keys; unknown strategy, augmentation
or backbone names are the registry's error (listing the valid names); bad
values name the key and the value. All errors are :class:`SpecError`.

Format (defaults shown; only ``dataset.prepared``, ``backbone.name`` and
``strategy.name`` are required)::

    dataset:
      name: null                 # display name (default: the prepared manifest's)
      prepared: PATH             # folder written by `tlbench prepare`
      budget: null               # label budget of the train split (tlbench.datasets.budget):
                                 # images per class (int), a fraction in (0, 1) or all
      budget_seed: null          # the seed the budget's subset is drawn from (null: the
                                 # run's seed; nested within a seed across budgets)
    backbone:
      name: MobileNetV2          # tlbench.models.backbones registry name
      weights: imagenet          # imagenet | none | PATH to a weights file | {run: RUN_FOLDER}
                                 # | {random: SEED}: random init drawn from SEED alone (an
                                 # integer 0 .. 2**32-1; not the run's seed), not pretrained,
                                 # its features cached and scored (tlbench.models.weights)
                                 # (autoencoder: none unless given here)
      kwargs: {}                 # constructor arguments, e.g. {alpha: 0.35}
    # or a keras-hub preset (tlbench.models.backbones.hub): {preset: NAME | FOLDER,
    #   weights: preset | none | {random: SEED}, kwargs: {pooling: cls | mean}}, which is
    #   {name: keras_hub, weights: preset, kwargs: {preset: NAME | FOLDER}}
    strategy:
      name: two_phase            # direct | scratch | feature_extraction | fine_tune |
                                 # two_phase | freeze_bottom | discriminative_lr | autoencoder
                                 # | linear_probe | lp_ft | bitfit | norm_only | surgical
      params: {}                 # per strategy, see tlbench.strategies; those that start
                                 # from pretrained weights take batchnorm: frozen | train
    head:
      type: gap_dense            # gap_dense: GAP -> Dropout -> Dense softmax
                                 # mlp: GAP -> [Dense relu -> Dropout] per hidden -> Dense softmax
      hidden: []                 # mlp default: [512, 256, 128]
      dropout: 0.2               # 0 <= dropout < 1
    augmentation:
      name: none                 # tlbench.models.augment registry name
      params: {}
    seed: 0
    training:
      optimizer: adam            # adam | sgd
      momentum: 0.9              # sgd only
      nesterov: false            # sgd only
      learning_rate: 0.001       # > 0
      schedule: {name: constant} # constant | exponential {decay_rate: 0.5, decay_epochs: 1}
                                 # | step {step_epochs: 7, gamma: 0.1}  (epochs counted per phase)
      batch_size: 32             # >= 1
      epochs: 10                 # >= 1
      early_stopping: {patience: 3, monitor: val_accuracy}  # or null (off); restores the best epoch
                                 # monitor: val_accuracy | val_loss | val_balanced_accuracy
                                 # | val_macro_f1 | val_roc_auc (two classes)
      input_size: null           # model input side; null = the prepared size; Resizing if different
      interpolation: bilinear    # bilinear | nearest | bicubic | lanczos3 | lanczos5
      mixed_precision: false
      jit_compile: auto          # auto | true | false: XLA-compiled steps (tlbench.training.jit;
                                 # auto: the mode measured fastest on the Keras backend)
      batchnorm_momentum: 0.9    # BatchNorm layers that train update their moving statistics
                                 # with this momentum (PyTorch's default; Keras applications ship
                                 # 0.99/0.999, too slow for short runs); null: the model's own
    features_cache: null         # folder of the frozen-backbone feature cache (tlbench.training.feature_cache):
                                 # reused if its key matches, computed there if absent;
                                 # null: computed in memory for this run only
    run: null                    # optional config-level names {dataset, backbone, ...},
                                 # copied into metrics.json
    tuned: null                  # optional {hyperparameter: value} chosen by tlbench.tuning
                                 # (already applied to training/strategy.params; recorded)
    pilot: false                 # true: train and evaluate on train/val only; the test
                                 # split is never opened (metrics.json test: null)
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tlbench.core.errors import SpecError, UnknownNameError, number_hint
from tlbench.datasets.budget import BudgetError, check_budget
from tlbench.models.backbones.hub_presets import (
    HUB_NAME,
    PRESET_WEIGHTS,
    check_hub_backbone,
    preset_backbone,
)
from tlbench.models.weights import RANDOM, check_random_seed
from tlbench.strategies.base import STRATEGIES
from tlbench.training.jit import check_jit_setting
from tlbench.training.names import (
    registry,  # names only unless tlbench.models.backbones is imported
)

REQUIRED = "<required>"

HEAD_TYPES = {"gap_dense": [], "mlp": [512, 256, 128]}
OPTIMIZERS = ("adam", "sgd")
INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "lanczos3", "lanczos5")
MONITORS = ("val_accuracy", "val_loss", "val_balanced_accuracy", "val_macro_f1", "val_roc_auc")
SCHEDULE_PARAMS: dict[str, dict[str, Any]] = {
    "constant": {},
    "exponential": {"decay_rate": 0.5, "decay_epochs": 1.0},
    "step": {"step_epochs": 7, "gamma": 0.1},
}

DEFAULTS: dict[str, Any] = {
    "dataset": {"name": None, "prepared": REQUIRED, "budget": None, "budget_seed": None},
    "backbone": {"name": REQUIRED, "weights": "imagenet", "kwargs": {}},
    "strategy": {"name": REQUIRED, "params": {}},
    "head": {"type": "gap_dense", "hidden": None, "dropout": 0.2},
    "augmentation": {"name": "none", "params": {}},
    "seed": 0,
    "training": {
        "optimizer": "adam",
        "momentum": 0.9,
        "nesterov": False,
        "learning_rate": 0.001,
        "schedule": {"name": "constant"},
        "batch_size": 32,
        "epochs": 10,
        "early_stopping": {"patience": 3, "monitor": "val_accuracy"},
        "input_size": None,
        "interpolation": "bilinear",
        "mixed_precision": False,
        "jit_compile": "auto",
        "batchnorm_momentum": 0.9,
    },
    "features_cache": None,
    "run": None,
    "tuned": None,
    "pilot": False,
}

# Keys whose value is a free-form mapping (checked by their owner, not here).
FREE_FORM = {
    "backbone.kwargs",
    "strategy.params",
    "augmentation.params",
    "run",
    "tuned",
    "training.schedule",  # checked by _check_schedule (params depend on the name)
}


def load_spec_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML run spec (not yet resolved)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"run spec {path} does not exist") from None
    except yaml.YAMLError as error:
        raise SpecError(f"run spec {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise SpecError(f"run spec {path}: expected a mapping at the top level, got {data!r}")
    return data


def resolve_spec(spec: Mapping[str, Any] | str | os.PathLike) -> dict[str, Any]:
    """Fill defaults and validate ``spec`` (a dict or a YAML path); return the resolved dict."""
    if not isinstance(spec, Mapping):
        spec = load_spec_file(spec)
    given_backbone = spec.get("backbone")
    weights_given = isinstance(given_backbone, Mapping) and "weights" in given_backbone
    if isinstance(given_backbone, Mapping) and "preset" in given_backbone:
        spec = {**spec, "backbone": preset_backbone(given_backbone, "backbone")}
    resolved = _merge(DEFAULTS, spec, "")
    _check_values(resolved, weights_given=weights_given)
    return resolved


def _merge(defaults: Mapping[str, Any], given: Any, where: str) -> dict[str, Any]:
    """Merge ``given`` over ``defaults``; unknown keys and missing required ones are errors."""
    if not isinstance(given, Mapping):
        raise SpecError(f"{where or 'spec'}: expected a mapping, got {given!r}")
    unknown = sorted(str(k) for k in given if k not in defaults)
    if unknown:
        raise SpecError(
            f"{_join(where, unknown[0])}: unknown key; valid keys"
            f"{' of ' + where if where else ''}: {', '.join(defaults)}"
        )
    out: dict[str, Any] = {}
    for key, default in defaults.items():
        path = _join(where, key)
        if key not in given:
            if default == REQUIRED:
                raise SpecError(f"{path}: required key is missing")
            out[key] = copy.deepcopy(default)
            continue
        value = given[key]
        if isinstance(default, dict) and path not in FREE_FORM and value is not None:
            value = _merge(default, value, path)
        elif path in FREE_FORM and value is not None and not isinstance(value, Mapping):
            raise SpecError(f"{path}: expected a mapping, got {value!r}")
        elif path in FREE_FORM and value is not None:
            value = copy.deepcopy(dict(value))
        out[key] = value
    return out


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _choice(path: str, value: Any, valid: tuple[str, ...] | list[str]) -> None:
    if value not in valid:
        raise SpecError(f"{path}: {value!r} is not valid; valid values: {', '.join(valid)}")


def _positive(path: str, value: Any, *, integer: bool = False) -> None:
    ok = _is_int(value) if integer else _is_number(value)
    if not ok or value <= 0:
        kind = "an integer >= 1" if integer else "a number > 0"
        raise SpecError(f"{path}: {value!r} must be {kind}{number_hint(value)}")


def _check_values(spec: dict[str, Any], *, weights_given: bool = True) -> None:
    """Validate every value of a merged spec and resolve name-dependent defaults
    (``weights_given``: whether the spec's backbone entry named its weights)."""

    dataset = spec["dataset"]
    if not isinstance(dataset["prepared"], str | os.PathLike) or not str(dataset["prepared"]):
        raise SpecError(f"dataset.prepared: {dataset['prepared']!r} must be a folder path")
    dataset["prepared"] = str(dataset["prepared"])
    if (
        dataset["budget"] is not None
    ):  # a label budget: the train split's subset (tlbench.datasets.budget)
        try:
            dataset["budget"] = check_budget(dataset["budget"], "dataset.budget")
        except BudgetError as error:
            raise SpecError(str(error)) from None
    seed = dataset["budget_seed"]
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise SpecError(f"dataset.budget_seed: {seed!r} must be null or an integer >= 0")

    backbone = spec["backbone"]
    if not isinstance(backbone["name"], str) or not backbone["name"]:
        raise SpecError(f"backbone.name: {backbone['name']!r} must be a backbone name")
    _check_backbone_name(backbone["name"])
    backbone["kwargs"] = dict(backbone["kwargs"] or {})
    if backbone["name"] == HUB_NAME:
        if not weights_given:
            backbone["weights"] = PRESET_WEIGHTS
        check_hub_backbone(backbone["weights"], backbone["kwargs"], "backbone")
    elif backbone["weights"] == PRESET_WEIGHTS:
        raise SpecError(
            f"backbone.weights: {PRESET_WEIGHTS!r} is the weights of a keras-hub preset "
            f"(backbone {{preset: ...}}), not of backbone {backbone['name']!r}"
        )
    backbone["weights"] = _check_weights(backbone["weights"])

    strategy_cls = _registry_get(STRATEGIES, spec["strategy"]["name"], "strategy.name")
    spec["strategy"]["params"] = strategy_cls.resolve_params(spec["strategy"]["params"])
    if strategy_cls.forces_weights is not None:
        backbone["weights"] = strategy_cls.forces_weights
    elif not weights_given and strategy_cls.default_weights is not None:
        backbone["weights"] = strategy_cls.default_weights

    _check_head(spec["head"])
    _check_augmentation(spec["augmentation"])

    if not _is_int(spec["seed"]) or spec["seed"] < 0:
        raise SpecError(f"seed: {spec['seed']!r} must be an integer >= 0")
    if not isinstance(spec["pilot"], bool):
        raise SpecError(f"pilot: {spec['pilot']!r} must be true or false")
    _check_training(spec["training"])

    if spec["features_cache"] is not None:
        if not isinstance(spec["features_cache"], str | os.PathLike):
            raise SpecError(f"features_cache: {spec['features_cache']!r} must be a folder path")
        spec["features_cache"] = str(spec["features_cache"])


def _registry_get(registry: Any, name: Any, path: str) -> Any:

    try:
        return registry.get(name)
    except UnknownNameError as error:
        raise SpecError(f"{path}: {error}") from None
    except TypeError:
        raise SpecError(f"{path}: {name!r} is not a name") from None


def _check_backbone_name(name: str) -> None:

    _registry_get(registry("backbone"), name, "backbone.name")


def _check_weights(weights: Any) -> str | dict[str, Any]:
    """``imagenet`` | ``none`` | a weights file path | ``{run: folder}`` | ``{random: SEED}``."""
    if weights is None:
        return "none"
    if isinstance(weights, Mapping):
        if set(weights) == {RANDOM}:
            return {RANDOM: check_random_seed(weights[RANDOM], "backbone.weights.random")}
        if set(weights) != {"run"} or not isinstance(weights["run"], str | os.PathLike):
            raise SpecError(
                f"backbone.weights: {dict(weights)!r} is not valid; a mapping must be "
                "{run: <run folder with model.keras>} or {random: SEED}"
            )
        return {"run": str(weights["run"])}
    if isinstance(weights, str | os.PathLike) and str(weights):
        return str(weights)
    raise SpecError(
        f"backbone.weights: {weights!r} is not valid; valid values: imagenet, none, "
        "a weights file path, {run: <run folder>}, {random: SEED}"
    )


def _check_head(head: dict[str, Any]) -> None:
    _choice("head.type", head["type"], list(HEAD_TYPES))
    if head["hidden"] is None:
        head["hidden"] = list(HEAD_TYPES[head["type"]])
    hidden = head["hidden"]
    if not isinstance(hidden, list) or not all(_is_int(h) and h >= 1 for h in hidden):
        raise SpecError(f"head.hidden: {hidden!r} must be a list of integers >= 1")
    if head["type"] == "gap_dense" and hidden:
        raise SpecError(f"head.hidden: {hidden!r} must be empty for head.type gap_dense (use mlp)")
    dropout = head["dropout"]
    if not _is_number(dropout) or not 0 <= dropout < 1:
        raise SpecError(f"head.dropout: {dropout!r} must be a number in [0, 1)")


def _check_augmentation(augmentation: dict[str, Any]) -> None:

    _registry_get(registry("augmentation"), augmentation["name"], "augmentation.name")
    augmentation["params"] = dict(augmentation["params"] or {})


def _check_training(training: dict[str, Any]) -> None:
    _choice("training.optimizer", training["optimizer"], OPTIMIZERS)
    momentum = training["momentum"]
    if not _is_number(momentum) or not 0 <= momentum <= 1:
        raise SpecError(f"training.momentum: {momentum!r} must be a number in [0, 1]")
    if not isinstance(training["nesterov"], bool):
        raise SpecError(f"training.nesterov: {training['nesterov']!r} must be true or false")
    _positive("training.learning_rate", training["learning_rate"])
    training["learning_rate"] = float(training["learning_rate"])
    training["schedule"] = _check_schedule(training["schedule"])
    _positive("training.batch_size", training["batch_size"], integer=True)
    _positive("training.epochs", training["epochs"], integer=True)
    stop = training["early_stopping"]
    if stop is not None:
        stop = _merge({"patience": 3, "monitor": "val_accuracy"}, stop, "training.early_stopping")
        _positive("training.early_stopping.patience", stop["patience"], integer=True)
        _choice("training.early_stopping.monitor", stop["monitor"], MONITORS)
        training["early_stopping"] = stop
    size = training["input_size"]
    if size is not None and (not _is_int(size) or size < 8):
        raise SpecError(f"training.input_size: {size!r} must be null or an integer >= 8")
    _choice("training.interpolation", training["interpolation"], INTERPOLATIONS)
    if not isinstance(training["mixed_precision"], bool):
        raise SpecError(
            f"training.mixed_precision: {training['mixed_precision']!r} must be true or false"
        )
    check_jit_setting(training["jit_compile"])
    bn = training["batchnorm_momentum"]
    if bn is not None and (not _is_number(bn) or not 0 < bn < 1):
        raise SpecError(f"training.batchnorm_momentum: {bn!r} must be null or a number in (0, 1)")


def _check_schedule(schedule: Any) -> dict[str, Any]:
    if not isinstance(schedule, Mapping) or "name" not in schedule:
        raise SpecError(f"training.schedule: {schedule!r} must be a mapping with a name")
    name = schedule["name"]
    _choice("training.schedule.name", name, list(SCHEDULE_PARAMS))
    defaults = {"name": name, **SCHEDULE_PARAMS[name]}
    out = _merge(defaults, schedule, "training.schedule")
    for key in SCHEDULE_PARAMS[name]:
        _positive(f"training.schedule.{key}", out[key], integer=key == "step_epochs")
    return out


#: Public name of the merge step (used by tlbench.training.feature_cache for its smaller spec).
merge_defaults = _merge


def budget_seed(spec: Mapping[str, Any]) -> int:
    """The seed a resolved spec's label-budget subset is drawn from: ``dataset.budget_seed``,
    else the run's ``seed`` (tlbench.datasets.budget)."""
    seed = spec["dataset"].get("budget_seed")
    return int(spec["seed"] if seed is None else seed)
