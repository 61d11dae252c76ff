"""Hyperparameter search with keras-tuner: learning rate and unfreeze depth, on validation data.

A strategy entry of the study config may carry a ``tuning:`` section; the
workflow then searches, once per (dataset, backbone, strategy), the values
listed in ``tuning.space`` and hands the best ones (``best.json``) to the final
runs of that cell, which record them as ``spec.tuned`` (see :func:`apply_tuned`).

Tuning section (defaults shown)::

    tuning:
      tuner: hyperband        # hyperband | bayesian | random
      max_epochs: null        # hyperband: most epochs of a trial (null: training.epochs)
      factor: 3               # hyperband: reduction factor between brackets
      hyperband_iterations: 1 # hyperband: how often the whole algorithm runs
      max_trials: 10          # bayesian | random: number of trials
      seed: 0                 # the search's seed, also the seed of every trial's training
      space:                  # what is tuned; keys depend on the strategy (TUNABLE)
        learning_rate: {min: 1.0e-4, max: 1.0e-2}          # log scale
        phase2_learning_rate: {min: 1.0e-5, max: 1.0e-3}   # two_phase, log scale
        unfreeze: {min: 0, max: 60, step: 10}              # two_phase: top layers, or
        # unfreeze: {blocks: [block_16, block_13, block_10]} # whole blocks (and all above)
        # frozen: {min: 0, max: 100, step: 10}             # freeze_bottom (or {blocks: [...]})
        # decay: {min: 0.1, max: 1.0}                      # discriminative_lr, linear

The objective is the validation accuracy (``val_accuracy``), or for two
classes the validation ROC AUC (``val_roc_auc``); trials read the train and
val splits only, never the test split. Every trial trains from scratch
as a run does (:func:`tlbench.assembly.build_model`, then the strategy's
:meth:`~tlbench.strategies.Strategy.train`, so two-phase training compiles and fits
twice inside one :meth:`keras_tuner.HyperModel.fit`), from a cleared Keras
session; under Hyperband a trial's epoch budget is its ``training.epochs``
(no weights are carried over between brackets).

The oracle's state lives in a work folder (``workdir/search-<key>``, ``key``
a hash of the search space, the tuner settings, the run spec and the
prepared data's manifest): a search killed mid-way and started again resumes
without redoing finished trials, and a changed search starts afresh (folders
of other keys are removed). ``workdir/search-<key>/trial_log.jsonl`` records
every trial's start and end (trial id, process id, time).

This module imports keras and keras-tuner lazily: the study config is
validated (:func:`resolve_tuning`) at every Snakemake start.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tlbench.core.atomic import atomic_file, write_json
from tlbench.core.errors import TuningError

TUNERS = ("hyperband", "bayesian", "random")
TUNER_KEYS = {
    "hyperband": ("max_epochs", "factor", "hyperband_iterations"),
    "bayesian": ("max_trials",),
    "random": ("max_trials",),
}
DEFAULTS: dict[str, Any] = {
    "tuner": "hyperband",
    "max_epochs": None,
    "factor": 3,
    "hyperband_iterations": 1,
    "max_trials": 10,
    "seed": 0,
    "space": None,
}
LOG_FLOATS = ("learning_rate", "phase2_learning_rate")
LINEAR_FLOATS = ("decay",)
DEPTHS = ("unfreeze", "frozen")
#: What each strategy can tune (``learning_rate`` -> ``training.learning_rate``,
#: everything else -> ``strategy.params.<name>``).
TUNABLE: dict[str, tuple[str, ...]] = {
    "scratch": ("learning_rate",),
    "fine_tune": ("learning_rate",),
    "feature_extraction": ("learning_rate",),
    "two_phase": ("learning_rate", "phase2_learning_rate", "unfreeze"),
    "freeze_bottom": ("learning_rate", "frozen"),
    "discriminative_lr": ("learning_rate", "decay"),
}
TRIAL_COLUMNS = ("trial", "status", "score", "epochs", "seconds")


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
    out["space"] = resolve_space(strategy, out["space"], f"{where}.space")
    # keep the chosen tuner's settings only (so a resolved section resolves to itself)
    keep = {"tuner", "seed", "space", *TUNER_KEYS[out["tuner"]]}
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
        if name in DEPTHS:
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
    """Depths no larger than the backbone, block names that it declares."""
    from tlbench.strategies.base import backbone_layers, block_names

    depth = len(backbone_layers(backbone.model))
    names = block_names(backbone)
    for key in DEPTHS:
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
        elif rng["max"] > depth:
            raise TuningError(
                f"{where}.{key}.max: {rng['max']} exceeds the depth of backbone "
                f"{backbone.name!r} ({depth} layers)"
            )


def objective_name(num_classes: int) -> str:
    """``val_roc_auc`` for binary data, ``val_accuracy`` otherwise."""
    return "val_roc_auc" if num_classes == 2 else "val_accuracy"


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


# --------------------------------------------------------------------------- search key


def search_key(spec: Mapping[str, Any], tuning: Mapping[str, Any], manifest: Mapping) -> str:
    """Hash of everything a search's trials depend on (space, tuner, spec, data, weights).

    Paths do not count; weights files and source runs count by content.
    """
    from tlbench.training.feature_cache import weights_identity

    spec = {k: v for k, v in spec.items() if k not in ("run", "features_cache", "tuned")}
    spec = {**spec, "dataset": {"name": spec.get("dataset", {}).get("name")}}
    if "backbone" in spec:
        backbone = dict(spec["backbone"])
        backbone["weights"] = weights_identity(backbone.get("weights", "none"))
        spec["backbone"] = backbone
    data = {k: v for k, v in manifest.items() if k not in ("prepare_seconds",)}
    blob = json.dumps(
        {"spec": spec, "tuning": tuning, "data": data}, sort_keys=True, default=str
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# --------------------------------------------------------------------------- keras-tuner


def hypermodel_class(strategy: str) -> type:
    """The :class:`keras_tuner.HyperModel` subclass that tunes ``strategy``
    (:mod:`tlbench.hypermodels`; keras-tuner is imported here, on first use)."""
    if strategy not in TUNABLE:
        raise TuningError(
            f"strategy {strategy!r} has nothing to tune; strategies that can be tuned: "
            f"{', '.join(sorted(TUNABLE))}"
        )
    from tlbench.tuning import hypermodels

    return hypermodels.HYPERMODELS.get(strategy, hypermodels.StrategyHyperModel)


class _Search:
    """One search: the base spec, the data (train and val only), the work folder."""

    def __init__(self, spec: dict[str, Any], tuning: dict[str, Any], data: Any, folder: Path):
        self.spec, self.tuning, self.folder = spec, tuning, folder
        self.classes = [str(c) for c in data.classes]
        self.splits = {name: data.split(name) for name in ("train", "val")}
        self.image_shape = tuple(int(s) for s in self.splits["train"][0].shape[1:])
        self.objective = objective_name(len(self.classes))

    def score(self, y: Any, prob: Any) -> dict[str, float]:
        """Validation accuracy and, for two classes, ROC AUC."""
        from tlbench.training.metrics import classification_metrics

        metrics = classification_metrics(y, prob, self.classes)
        out = {"val_accuracy": float(metrics["accuracy"])}
        if self.objective == "val_roc_auc":
            auc = metrics.get("roc_auc")
            out["val_roc_auc"] = float(auc) if auc is not None else 0.5
        return out

    def trial_spec(self, values: Mapping[str, Any], epochs: int | None) -> dict[str, Any]:
        """The resolved run spec of a trial: the tuned ``values`` applied, and
        ``epochs`` (Hyperband's budget for the trial, None: the spec's) set."""
        from tlbench.training.spec import resolve_spec

        spec = apply_tuned(self.spec, values)
        if epochs is not None:
            spec["training"]["epochs"] = int(epochs)
        return resolve_spec(spec)

    def log_event(self, trial_id: str | None, event: str, **fields: Any) -> None:
        """Append one line to ``trial_log.jsonl`` (trial id, event, pid, time, fields)."""
        line = {"trial": trial_id, "event": event, "pid": os.getpid(), "time": time.time()}
        with open(self.folder / "trial_log.jsonl", "a") as handle:
            handle.write(json.dumps({**line, **fields}) + "\n")


def _prepare_spec(spec: Mapping[str, Any], data: Any) -> dict[str, Any]:
    """Resolve the base spec; fill dataset name and model input size from the data."""
    from tlbench.models.inputs import fill_input_size
    from tlbench.training.spec import resolve_spec

    spec = resolve_spec(spec)
    if spec["dataset"]["name"] is None:
        spec["dataset"]["name"] = data.manifest.get("dataset")
    fill_input_size(spec["training"], data)
    spec.pop("tuned", None)
    return spec


def _project_folder(workdir: Path, key: str) -> Path:
    """``workdir/search-<key>``; folders of other searches are removed (stale state)."""
    workdir.mkdir(parents=True, exist_ok=True)
    name = f"search-{key}"
    for old in workdir.glob("search-*"):
        if old.name != name and old.is_dir():
            print(f"tuning: removing the state of another search: {old}", file=sys.stderr)
            shutil.rmtree(old)
    (workdir / name).mkdir(exist_ok=True)
    return workdir / name


def _tuner(search: _Search, workdir: Path, project: str) -> Any:
    """The configured keras-tuner tuner over this search's HyperModel (resumes its state)."""
    import keras_tuner

    tuning = search.tuning
    hypermodel = hypermodel_class(search.spec["strategy"]["name"])(search)
    common = {
        "hypermodel": hypermodel,
        "objective": keras_tuner.Objective(search.objective, direction="max"),
        "seed": tuning["seed"],
        "directory": str(workdir),
        "project_name": project,
        "overwrite": False,
        "max_consecutive_failed_trials": 1000,
    }
    from tlbench.tuning.hypermodels import TUNER_CLASSES

    cls = TUNER_CLASSES[tuning["tuner"]]
    if tuning["tuner"] == "hyperband":
        return cls(
            max_epochs=tuning["max_epochs"] or search.spec["training"]["epochs"],
            factor=tuning["factor"],
            hyperband_iterations=tuning["hyperband_iterations"],
            **common,
        )
    return cls(max_trials=tuning["max_trials"], **common)


def search(
    spec: Mapping[str, Any],
    tuning: Mapping[str, Any],
    workdir: str | os.PathLike,
    best_json: str | os.PathLike,
    trials_csv: str | os.PathLike,
    *,
    names: Mapping[str, Any] | None = None,
    where: str = "tuning",
) -> dict[str, Any]:
    """Run (or resume) the search of one tuned cell; write ``best.json`` and ``trials.csv``.

    ``spec`` is the cell's run spec (its seed is replaced by ``tuning.seed``),
    ``tuning`` its tuning section (validated here), ``names`` the config-level
    names recorded in ``best.json``. Returns the contents of ``best.json``.
    """
    from tlbench.models import inputs as pipeline
    from tlbench.models.backbones.applications import build_backbone

    tuning = resolve_tuning(spec["strategy"]["name"], tuning, where)
    data = pipeline.load_prepared(spec["dataset"]["prepared"], pipeline.TRAIN_VAL_SPLITS)
    base = _prepare_spec({**spec, "seed": tuning["seed"]}, data)
    size = base["training"]["input_size"]
    check_space_against_backbone(
        tuning["space"], build_backbone(base["backbone"], (size, size, 3)), f"{where}.space"
    )
    key = search_key(base, tuning, data.manifest)
    workdir = Path(workdir)
    folder = _project_folder(workdir, key)
    state = _Search(base, tuning, data, folder)
    tuner = _tuner(state, workdir, folder.name)
    start = time.perf_counter()
    tuner.search(verbose=2)
    rows = trial_rows(tuner.oracle, tuning["space"])
    done = [r for r in rows if r["status"] == "COMPLETED" and r["score"] is not None]
    if not done:
        raise RuntimeError(f"tuning {where}: no trial completed; see {folder}/trial_log.jsonl")
    best = best_trial(done)
    result = {
        "names": dict(names or {}),
        "strategy": base["strategy"]["name"],
        "tuner": tuning["tuner"],
        "objective": state.objective,
        "best_trial": best["trial"],
        "best_score": best["score"],
        "selected_from": "completed trials at the largest epoch budget "
        f"({best.get('budget_epochs')} epochs)",
        "tuned": {name: best[name] for name in tuning["space"]},
        "trials": len(rows),
        "completed_trials": len(done),
        "search_seconds_this_session": round(time.perf_counter() - start, 3),
        "search_key": key,
        "tuning": tuning,
    }
    _write_trials(rows, list(tuning["space"]), trials_csv)
    write_json(best_json, result)
    return result


def best_trial(done: list[dict[str, Any]]) -> dict[str, Any]:
    """The best completed trial among those trained with the largest epoch budget.

    Hyperband scores many trials after a fraction of the epochs; on a small
    validation split a lucky 2-epoch score would beat every fully trained
    trial, while the final runs train the full budget. Tuners without budgets
    give every trial the same one, so this is the plain best there.
    """
    top = max(r.get("budget_epochs") or 0 for r in done)
    return max((r for r in done if (r.get("budget_epochs") or 0) == top), key=lambda r: r["score"])


def trial_rows(oracle: Any, space: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per trial of ``oracle``: id, status, score, epochs, seconds, values."""
    rows = []
    for trial_id in sorted(oracle.trials, key=lambda t: (len(t), t)):
        trial = oracle.trials[trial_id]
        values = trial.hyperparameters.values
        row: dict[str, Any] = {
            "trial": trial_id,
            "status": str(getattr(trial.status, "value", trial.status)),
            "score": None if trial.score is None else float(trial.score),
        }
        for metric in ("epochs", "seconds"):
            history = trial.metrics.metrics.get(metric)
            row[metric] = None if history is None else history.get_last_value()
        for name in space:
            row[name] = values.get(name)
        row["budget_epochs"] = values.get("tuner/epochs")
        rows.append(row)
    return rows


def _write_trials(rows: list[dict[str, Any]], names: list[str], path: str | os.PathLike) -> None:
    columns = [*TRIAL_COLUMNS, *names, "budget_epochs"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else row[c] for c in columns})
    with atomic_file(path) as handle:
        handle.write(out.getvalue())


# --------------------------------------------------------------------------- report


def read_trials(trials_csv: str | os.PathLike) -> Any:
    """The trials of a search (``trials.csv``) as a DataFrame."""
    import pandas as pd

    return pd.read_csv(trials_csv, dtype={"trial": str})


def trials_table(trials_csv: str | os.PathLike) -> Any:
    """All trials of a search, best score first: hyperparameters, score, epochs, seconds."""
    df = read_trials(trials_csv)
    df = df.sort_values("score", ascending=False, na_position="last", kind="stable")
    df = df.reset_index(drop=True)
    scores = df["score"].to_numpy(dtype=float)
    if len(scores) and (scores == scores).any():
        df.attrs["best"] = {"score": [int(i) for i in (scores == max(scores)).nonzero()[0]]}
    return df


def plot_trials(
    trials_csv: str | os.PathLike,
    png: str | os.PathLike,
    title: str = "",
    objective: str = "",
    space: Mapping[str, Any] | None = None,
) -> Path:
    """Validation score against each tuned hyperparameter (one panel each), as PNG.

    Learning rates on a log axis; block names in the order of the search
    space's list (``space``, e.g. ``best.json["tuning"]["space"]``; else in
    order of appearance); point colour: the trial's epoch budget (Hyperband)
    or epochs.
    """
    import pandas as pd
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, NullFormatter

    df = read_trials(trials_csv)
    names = [c for c in df.columns if c not in (*TRIAL_COLUMNS, "budget_epochs")]
    if not names:
        raise ValueError(f"{trials_csv}: no hyperparameter columns")
    done = df[df["status"] == "COMPLETED"]
    fig = Figure(figsize=(4.2 * len(names), 3.6))
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    budget = done["budget_epochs"] if done["budget_epochs"].notna().any() else done["epochs"]
    for ax, name in zip(axes, names, strict=True):
        x = done[name]
        numeric = pd.api.types.is_numeric_dtype(df[name])
        if not numeric:
            given = ((space or {}).get(name) or {}).get("blocks") or []
            order = list(dict.fromkeys([*map(str, given), *df[name].astype(str)]))
            x = x.astype(str).map(order.index)
            ax.set_xticks(range(len(order)), order, rotation=30, ha="right")
        points = ax.scatter(x, done["score"], c=budget, cmap="viridis", s=36, edgecolor="k")
        if name in LOG_FLOATS:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        label = {"unfreeze": "top layers", "frozen": "bottom layers"}.get(name)
        if label and not numeric:
            label = "from this block up" if name == "unfreeze" else "up to this block"
        ax.set_xlabel(f"{name} ({label})" if label else name)
        if ax is axes[0]:
            ax.set_ylabel(objective or "validation score")
        ax.grid(alpha=0.3)
    if len(done):
        bar = fig.colorbar(points, ax=list(axes), label="epochs of the trial")
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
    fig.suptitle(title or "tuning trials")
    png = Path(png)
    with atomic_file(png, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100, bbox_inches="tight")
    return png


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tlbench.tuning SPEC.yaml TUNING.yaml WORKDIR BEST.json TRIALS.csv``."""
    import yaml

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 5:
        print(main.__doc__, file=sys.stderr)
        return 2
    spec = yaml.safe_load(Path(args[0]).read_text())
    tuning = yaml.safe_load(Path(args[1]).read_text())
    result = search(spec, tuning, args[2], args[3], args[4])
    print(json.dumps(result["tuned"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
