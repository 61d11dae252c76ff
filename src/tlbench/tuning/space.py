"""A strategy's `tuning:` section: the search space (learning rates, unfreeze depth, a block) and
the tuner checked and filled (:func:`resolve_tuning`), checked against a backbone, and
the best trial's values applied to a run spec (:func:`apply_tuned`).
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tlbench.core.errors import TuningError
from tlbench.strategies.base import backbone_layers, block_names

TUNERS = ("hyperband", "bayesian", "random")
TUNER_KEYS = {
    "hyperband": ("max_epochs", "factor", "hyperband_iterations"),
    "bayesian": ("max_trials",),
    "random": ("max_trials",),
}
#: Searched on a log scale (learning rates; lora's adapter strength ``alpha``; the penalty
#: strengths of l2_sp, ``alpha`` and ``beta``, and bss, ``eta``; lp_ft's fine-tuning rate).
LOG_FLOATS = ("learning_rate", "phase2_learning_rate", "alpha", "beta", "eta", "ft_learning_rate")
LINEAR_FLOATS = ("decay",)
DEPTHS = ("unfreeze", "frozen")
#: Hyperparameters that name one block: {blocks: [names]} or block indices {min, max, step}.
BLOCKS = ("block",)


# --------------------------------------------------------------------------- config


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def resolve_tuning(strategy: str, tuning: Mapping[str, Any], where: str = "tuning") -> dict:
    """Fill defaults and validate the tuning section of a strategy named ``strategy``.

    ``where`` is the key path used in error messages (e.g.
    ``strategies.two_phase_tuned.tuning``). Raises :class:`TuningError`.
    """
    if not isinstance(tuning, Mapping):
        raise TuningError(f"{where}: expected a mapping, got {tuning!r}")
    if strategy not in TUNABLE:
        raise TuningError(
            f"{where}: strategy {strategy!r} has nothing to tune; strategies that can be "
            f"tuned: {', '.join(sorted(TUNABLE))}"
        )
    unknown = sorted(set(tuning) - set(DEFAULTS))
    if unknown:
        raise TuningError(f"{where}.{unknown[0]}: unknown key; valid keys: {', '.join(DEFAULTS)}")
    out = {**copy.deepcopy(DEFAULTS), **copy.deepcopy(dict(tuning))}
    if out["tuner"] not in TUNERS:
        raise TuningError(
            f"{where}.tuner: {out['tuner']!r} is not valid; valid tuners: {', '.join(TUNERS)}"
        )
    for key in sorted(set(tuning) & {k for keys in TUNER_KEYS.values() for k in keys}):
        if key not in TUNER_KEYS[out["tuner"]]:
            raise TuningError(
                f"{where}.{key}: not a setting of tuner {out['tuner']!r}; its settings: "
                f"{', '.join(TUNER_KEYS[out['tuner']])}"
            )
    for key, minimum in (("factor", 2), ("hyperband_iterations", 1), ("max_trials", 1)):
        if not _is_int(out[key]) or out[key] < minimum:
            raise TuningError(f"{where}.{key}: {out[key]!r} must be an integer >= {minimum}")
    if out["max_epochs"] is not None and (not _is_int(out["max_epochs"]) or out["max_epochs"] < 1):
        raise TuningError(f"{where}.max_epochs: {out['max_epochs']!r} must be an integer >= 1")
    if not _is_int(out["seed"]) or out["seed"] < 0:
        raise TuningError(f"{where}.seed: {out['seed']!r} must be an integer >= 0")
    if out["metric"] not in METRICS:
        raise TuningError(
            f"{where}.metric: {out['metric']!r} is not valid; valid metrics: {', '.join(METRICS)}"
        )
    out["space"] = resolve_space(strategy, out["space"], f"{where}.space")
    # keep the chosen tuner's settings only (so a resolved section resolves to itself);
    # metric only when not auto (a section resolved before it existed keeps its search key)
    keep = {"tuner", "seed", "space", *TUNER_KEYS[out["tuner"]]}
    keep |= {"metric"} if out["metric"] != "auto" else set()
    return {k: v for k, v in out.items() if k in keep}


def resolve_space(strategy: str, space: Any, where: str) -> dict[str, dict[str, Any]]:
    """Validate the search space of ``strategy`` (bounds, order, signs, block lists)."""
    valid = TUNABLE[strategy]
    if not isinstance(space, Mapping) or not space:
        raise TuningError(
            f"{where}: {space!r} must be a non-empty mapping of hyperparameters to ranges; "
            f"strategy {strategy!r} can tune: {', '.join(valid)}"
        )
    out: dict[str, dict[str, Any]] = {}
    for name, rng in space.items():
        path = f"{where}.{name}"
        if name not in valid:
            raise TuningError(
                f"{path}: strategy {strategy!r} cannot tune {name!r}; it can tune: "
                f"{', '.join(valid)}"
            )
        if not isinstance(rng, Mapping):
            raise TuningError(f"{path}: {rng!r} must be a mapping such as {{min: .., max: ..}}")
        if name in DEPTHS or name in BLOCKS:
            out[name] = _depth_range(dict(rng), path)
        else:
            out[name] = _float_range(name, dict(rng), path)
    return out


def _float_range(name: str, rng: dict[str, Any], path: str) -> dict[str, Any]:
    _keys(rng, ("min", "max"), path)
    low, high = rng["min"], rng["max"]
    for key, value in (("min", low), ("max", high)):
        if not _is_number(value) or value <= 0:
            raise TuningError(f"{path}.{key}: {value!r} must be a number > 0")
    if name in LINEAR_FLOATS and high > 1:
        raise TuningError(f"{path}.max: {high!r} must be <= 1 (a decay factor)")
    if low >= high:
        raise TuningError(f"{path}: bounds in the wrong order: min {low!r} >= max {high!r}")
    return {"min": float(low), "max": float(high)}


def _depth_range(rng: dict[str, Any], path: str) -> dict[str, Any]:
    if "blocks" in rng:
        _keys(rng, ("blocks",), path)
        blocks = rng["blocks"]
        if (
            not isinstance(blocks, list)
            or not blocks
            or not all(isinstance(b, str) and b for b in blocks)
            or len(set(blocks)) != len(blocks)
        ):
            raise TuningError(f"{path}.blocks: {blocks!r} must be a list of distinct block names")
        return {"blocks": list(blocks)}
    rng.setdefault("step", 1)
    _keys(rng, ("min", "max", "step"), path)
    for key in ("min", "max", "step"):
        value, minimum = rng[key], 1 if key == "step" else 0
        if not _is_int(value) or value < minimum:
            raise TuningError(f"{path}.{key}: {value!r} must be an integer >= {minimum}")
    if rng["min"] >= rng["max"]:
        raise TuningError(
            f"{path}: bounds in the wrong order: min {rng['min']!r} >= max {rng['max']!r}"
        )
    return {"min": rng["min"], "max": rng["max"], "step": rng["step"]}


def _keys(rng: dict[str, Any], allowed: Sequence[str], path: str) -> None:
    unknown = sorted(set(rng) - set(allowed))
    if unknown:
        raise TuningError(f"{path}.{unknown[0]}: unknown key; valid keys: {', '.join(allowed)}")
    missing = [k for k in allowed if k not in rng]
    if missing:
        raise TuningError(f"{path}.{missing[0]}: missing (required)")


def check_space_against_backbone(
    space: Mapping[str, Mapping[str, Any]], backbone: Any, where: str
) -> None:
    """Depths no larger than the backbone, block names that it declares, block indices
    below its number of blocks."""

    names = block_names(backbone)
    depth, unit = len(backbone_layers(backbone.model)), "layers"
    if getattr(backbone, "depth_unit", "layer") == "block":  # whole transformer blocks
        depth, unit = len([n for n in names if n != "stem"]), "transformer blocks"
    for key in (*DEPTHS, *BLOCKS):
        rng = space.get(key)
        if rng is None:
            continue
        if "blocks" in rng:
            for block in rng["blocks"]:
                if block not in names:
                    raise TuningError(
                        f"{where}.{key}.blocks: unknown block {block!r} of backbone "
                        f"{backbone.name!r}; valid blocks: {', '.join(names) or '(none)'}"
                    )
        elif key in BLOCKS and rng["max"] >= len(names):
            raise TuningError(
                f"{where}.{key}.max: block index {rng['max']} is out of range for backbone "
                f"{backbone.name!r} ({len(names)} blocks, 0 to {len(names) - 1})"
            )
        elif key in DEPTHS and rng["max"] > depth:
            raise TuningError(
                f"{where}.{key}.max: {rng['max']} exceeds the depth of backbone "
                f"{backbone.name!r} ({depth} {unit})"
            )


def objective_name(num_classes: int, metric: str = "auto") -> str:
    """The search's objective, the validation figure of ``metric`` (a tuning section's,
    :data:`METRICS`); ``auto``: ``val_roc_auc`` for binary data, ``val_accuracy``
    otherwise. ``roc_auc`` needs two classes (:class:`TuningError`)."""
    if metric == "auto":
        return "val_roc_auc" if num_classes == 2 else "val_accuracy"
    if metric == "roc_auc" and num_classes != 2:
        raise TuningError(
            f"tuning metric 'roc_auc' is for two classes; the dataset has {num_classes}"
        )
    return f"val_{metric}"


# --------------------------------------------------------------------------- applying values


def apply_tuned(spec: Mapping[str, Any], tuned: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of run spec ``spec`` with the tuned values set and recorded as ``tuned``.

    ``learning_rate`` sets ``training.learning_rate``; every other name sets
    ``strategy.params.<name>`` (for ``two_phase``, ``phase2_learning_rate``
    takes precedence over ``phase2_lr_factor``).
    """
    out = copy.deepcopy(dict(spec))
    for name, value in tuned.items():
        if name == "learning_rate":
            out.setdefault("training", {})["learning_rate"] = value
        else:
            strategy = out.setdefault("strategy", {})
            strategy["params"] = {**(strategy.get("params") or {}), name: value}
    out["tuned"] = dict(tuned)
    return out


def read_tuned(best_json: str | os.PathLike) -> dict[str, Any]:
    """The tuned hyperparameters in a ``best.json`` written by :func:`search`."""
    data = json.loads(Path(best_json).read_text())
    if not isinstance(data.get("tuned"), dict):
        raise TuningError(f"{best_json}: no 'tuned' mapping; is it a tlbench tuning result?")
    return data["tuned"]


DEFAULTS: dict[str, Any] = {
    "tuner": "hyperband",
    "max_epochs": None,
    "factor": 3,
    "hyperband_iterations": 1,
    "max_trials": 10,
    "seed": 0,
    "space": None,
    "metric": "auto",
}
#: ``metric`` of a tuning section: what the objective is (the study's ``selection.metric``,
#: set by the study config; :func:`objective_name`).
METRICS = ("auto", "accuracy", "balanced_accuracy", "macro_f1", "roc_auc")
#: What each strategy can tune (``learning_rate`` -> ``training.learning_rate``,
#: everything else -> ``strategy.params.<name>``).
TUNABLE: dict[str, tuple[str, ...]] = {
    "scratch": ("learning_rate",),
    "fine_tune": ("learning_rate",),
    "feature_extraction": ("learning_rate",),
    "two_phase": ("learning_rate", "phase2_learning_rate", "unfreeze"),
    "freeze_bottom": ("learning_rate", "frozen"),
    "discriminative_lr": ("learning_rate", "decay"),
    "lora": ("learning_rate", "alpha"),
    "lp_ft": ("ft_learning_rate",),
    "bitfit": ("learning_rate",),
    "norm_only": ("learning_rate",),
    "surgical": ("learning_rate", "block"),
    "l2_sp": ("learning_rate", "alpha", "beta"),
    "bss": ("learning_rate", "eta"),
}
