"""Hyperparameter search with keras-tuner: learning rate and unfreeze depth, on validation data.

A strategy entry of the study config may carry a ``tuning:`` section; the
workflow then searches, once per (dataset, backbone, strategy), the values
listed in ``tuning.space`` and hands the best ones (``best.json``) to the final
runs of that cell, which record them as ``spec.tuned``
(:func:`tlbench.tuning.space.apply_tuned`).

Tuning section (defaults shown; checked by :mod:`tlbench.tuning.space`)::

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
        # ft_learning_rate: {min: 1.0e-5, max: 1.0e-3}    # lp_ft, log scale
        # block: {blocks: [block_13, top]}                 # surgical (or {min, max, step})
        # alpha: {min: 1.0e-3, max: 1.0}                   # l2_sp (and beta), log scale
        # eta: {min: 1.0e-4, max: 1.0e-1}                  # bss, log scale

The objective is the validation accuracy (``val_accuracy``), or for two
classes the validation ROC AUC (``val_roc_auc``); with the study's
``selection.metric`` (the tuning section's ``metric``) the validation figure of that
metric (``val_balanced_accuracy``, ``val_macro_f1``, ...); trials read the train and
val splits only, never the test split. Every trial trains from scratch
as a run does (:func:`tlbench.models.assembly.build_model`, then the strategy's
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

keras-tuner is imported on the first search (:mod:`tlbench.tuning.hypermodels`);
the study config's tuning sections are checked by :mod:`tlbench.tuning.space` at
every Snakemake start, without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tlbench.core.atomic import write_json
from tlbench.core.errors import TuningError
from tlbench.models import inputs
from tlbench.models.backbones.applications import build_backbone
from tlbench.models.inputs import fill_input_size
from tlbench.training.feature_cache import weights_identity
from tlbench.training.metrics import classification_metrics
from tlbench.training.spec import resolve_spec
from tlbench.tuning.space import (
    TUNABLE,
    apply_tuned,
    check_space_against_backbone,
    objective_name,
    resolve_tuning,
)
from tlbench.tuning.trials import best_trial, trial_rows, write_trials

# --------------------------------------------------------------------------- search key


def search_key(spec: Mapping[str, Any], tuning: Mapping[str, Any], manifest: Mapping) -> str:
    """Hash of everything a search's trials depend on (space, tuner, spec, data, weights).

    Paths do not count; weights files and source runs count by content.
    """

    spec = {k: v for k, v in spec.items() if k not in ("run", "features_cache", "tuned")}
    spec = {**spec, "dataset": {"name": spec.get("dataset", {}).get("name")}}
    if "backbone" in spec:
        backbone = dict(spec["backbone"])
        backbone["weights"] = weights_identity(
            backbone.get("weights", "none"), backbone.get("kwargs")
        )
        spec["backbone"] = backbone
    data = {k: v for k, v in manifest.items() if k not in ("prepare_seconds",)}
    blob = json.dumps(
        {"spec": spec, "tuning": tuning, "data": data}, sort_keys=True, default=str
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# --------------------------------------------------------------------------- keras-tuner


def hypermodel_class(strategy: str) -> type:
    """The :class:`keras_tuner.HyperModel` subclass that tunes ``strategy``
    (:mod:`tlbench.tuning.hypermodels`; keras-tuner is imported here, on first use)."""
    if strategy not in TUNABLE:
        raise TuningError(
            f"strategy {strategy!r} has nothing to tune; strategies that can be tuned: "
            f"{', '.join(sorted(TUNABLE))}"
        )
    # deferred: keras-tuner on first search
    from tlbench.tuning import hypermodels

    return hypermodels.HYPERMODELS.get(strategy, hypermodels.StrategyHyperModel)


class _Search:
    """One search: the base spec, the data (train and val only), the work folder."""

    def __init__(self, spec: dict[str, Any], tuning: dict[str, Any], data: Any, folder: Path):
        self.spec, self.tuning, self.folder = spec, tuning, folder
        self.classes = [str(c) for c in data.classes]
        self.splits = {name: data.split(name) for name in ("train", "val")}
        self.image_shape = tuple(int(s) for s in self.splits["train"][0].shape[1:])
        self.objective = objective_name(len(self.classes), tuning.get("metric", "auto"))

    def score(self, y: Any, prob: Any) -> dict[str, float]:
        """Validation accuracy and the objective's figure (ROC AUC, balanced accuracy or
        macro-F1) when it is another."""

        metrics = classification_metrics(y, prob, self.classes)
        out = {"val_accuracy": float(metrics["accuracy"])}
        if self.objective == "val_roc_auc":
            auc = metrics.get("roc_auc")
            out["val_roc_auc"] = float(auc) if auc is not None else 0.5
        elif self.objective != "val_accuracy":
            out[self.objective] = float(metrics[self.objective.removeprefix("val_")])
        return out

    def trial_spec(self, values: Mapping[str, Any], epochs: int | None) -> dict[str, Any]:
        """The resolved run spec of a trial: the tuned ``values`` applied, and
        ``epochs`` (Hyperband's budget for the trial, None: the spec's) set."""

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
    # deferred: keras-tuner on first search
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
    # deferred: keras-tuner on first search
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

    tuning = resolve_tuning(spec["strategy"]["name"], tuning, where)
    data = inputs.load_prepared(spec["dataset"]["prepared"], inputs.TRAIN_VAL_SPLITS)
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
    write_trials(rows, list(tuning["space"]), trials_csv)
    write_json(best_json, result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tlbench.tuning SPEC.yaml TUNING.yaml WORKDIR BEST.json TRIALS.csv``."""

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
