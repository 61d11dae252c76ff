"""keras-tuner classes of :mod:`tlbench.tuning`: one HyperModel per tunable strategy
and the tuners that run them. Imported by :mod:`tlbench.tuning` on first use only
(it imports keras-tuner).

A trial trains as a run does: :func:`tlbench.models.assembly.build_model` in
:meth:`StrategyHyperModel.build`, the strategy's
:meth:`~tlbench.strategies.Strategy.train` in :meth:`StrategyHyperModel.fit`, then a
score on the val split (the search object, ``tlbench.tuning.search._Search``, holds only
the train and val splits).
"""

from __future__ import annotations

import time
from typing import Any

import keras
import keras_tuner
import numpy as np

from tlbench.models.assembly import build_model
from tlbench.models.inputs import predict
from tlbench.strategies.base import STRATEGIES, TrainContext
from tlbench.training.trainer import Trainer
from tlbench.tuning.space import LOG_FLOATS


class StrategyHyperModel(keras_tuner.HyperModel):
    """Builds and trains one trial of a strategy as a run does.

    Subclasses declare the strategy's hyperparameters in :meth:`declare`.
    """

    def __init__(self, search: Any):
        super().__init__(name=f"tlbench_{search.spec['strategy']['name']}", tunable=True)
        self.search = search
        self.trial_id: str | None = None
        self._built: Any = None
        self._spec: dict[str, Any] | None = None
        self._strategy: Any = None

    def declare(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        """Declare the tuned hyperparameters on ``hp``; return their values. Here those
        searched on a log scale (:data:`tlbench.tuning.space.LOG_FLOATS`: learning rates, the
        strengths ``alpha``, ``beta``, ``eta`` of lora, l2_sp and bss, lp_ft's
        ``ft_learning_rate``), whatever the strategy."""
        space, values = self.search.tuning["space"], {}
        for name in LOG_FLOATS:  # learning rates, penalty strengths: log scale
            if name in space:
                rng = space[name]
                values[name] = hp.Float(name, rng["min"], rng["max"], sampling="log")
        return values

    def _depth(self, hp: keras_tuner.HyperParameters, name: str) -> int | str:
        rng = self.search.tuning["space"][name]
        if "blocks" in rng:
            return hp.Choice(name, rng["blocks"])
        return hp.Int(name, rng["min"], rng["max"], step=rng["step"])

    def trial_spec(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        """The resolved run spec of a trial (tuned values applied, epoch budget set)."""
        return self.search.trial_spec(self.declare(hp), hp.values.get("tuner/epochs"))

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        keras.backend.clear_session()
        spec = self.trial_spec(hp)
        keras.utils.set_random_seed(spec["seed"])
        strategy = STRATEGIES.get(spec["strategy"]["name"])(spec["strategy"]["params"])
        self._spec, self._strategy = spec, strategy
        self._built = build_model(spec, strategy, self.search.image_shape, len(self.search.classes))
        return self._built.model

    def fit(self, hp: keras_tuner.HyperParameters, model: keras.Model, *args, **kwargs):
        """Train through every phase of the strategy; score on the val split."""
        if self._built is None or self._built.model is not model:
            raise RuntimeError("HyperModel.fit got a model its build() did not return")
        self.search.log_event(self.trial_id, "start")
        start = time.perf_counter()
        trainer = Trainer(self._spec)
        ctx = TrainContext(
            self._spec,
            self._built,
            self.search.splits,
            self.search.image_shape,
            self.search.classes,
            trainer,
        )
        result = self._strategy.train(ctx)
        seconds = time.perf_counter() - start
        if result.failure is not None:
            self.search.log_event(self.trial_id, "failed", reason=result.failure)
            raise keras_tuner.errors.FailedTrialError(result.failure)
        x_val, y_val = self.search.splits["val"]
        prob = predict(result.model, x_val, self._spec["training"]["batch_size"])
        scores = self.search.score(np.asarray(y_val), prob)
        scores.update(epochs=float(len(trainer.rows)), seconds=round(seconds, 3))
        self.search.log_event(self.trial_id, "end", **scores)
        self._built = None
        return scores


class TwoPhaseHyperModel(StrategyHyperModel):
    """two_phase: learning rate and phase-2 learning rate (the base class), unfreeze depth
    (layers or blocks)."""

    def declare(self, hp):
        values = super().declare(hp)
        space = self.search.tuning["space"]
        if "unfreeze" in space:
            values["unfreeze"] = self._depth(hp, "unfreeze")
        return values


class FreezeBottomHyperModel(StrategyHyperModel):
    """freeze_bottom: learning rate and the number of frozen layers (or a block)."""

    def declare(self, hp):
        values = super().declare(hp)
        if "frozen" in self.search.tuning["space"]:
            values["frozen"] = self._depth(hp, "frozen")
        return values


class DiscriminativeLRHyperModel(StrategyHyperModel):
    """discriminative_lr: learning rate and the layer-wise decay factor."""

    def declare(self, hp):
        values = super().declare(hp)
        rng = self.search.tuning["space"].get("decay")
        if rng is not None:
            values["decay"] = hp.Float("decay", rng["min"], rng["max"])
        return values


class SurgicalHyperModel(StrategyHyperModel):
    """surgical: learning rate and the block that trains (names, or indices)."""

    def declare(self, hp):
        values = super().declare(hp)
        if "block" in self.search.tuning["space"]:
            values["block"] = self._depth(hp, "block")
        return values


class TrialTracking:
    """Tuner mixin: tell the HyperModel its trial id; no weights across brackets."""

    def run_trial(self, trial, *args, **kwargs):
        self.hypermodel.trial_id = trial.trial_id
        return super().run_trial(trial, *args, **kwargs)

    def _build_hypermodel(self, hp):
        # keras_tuner.Hyperband would load the weights of the trial this one
        # continues; a tlbench trial trains from scratch through all its phases.
        return keras_tuner.Tuner._build_hypermodel(self, hp)


class Hyperband(TrialTracking, keras_tuner.Hyperband):
    """keras-tuner's Hyperband, trials tracked, no weights carried between brackets."""


class BayesianOptimization(TrialTracking, keras_tuner.BayesianOptimization):
    """keras-tuner's Bayesian optimisation, trials tracked."""


class RandomSearch(TrialTracking, keras_tuner.RandomSearch):
    """keras-tuner's random search, trials tracked."""


#: Tuner class of each ``tuning.tuner`` value.
TUNER_CLASSES: dict[str, type] = {
    "hyperband": Hyperband,
    "bayesian": BayesianOptimization,
    "random": RandomSearch,
}
#: HyperModel of each tunable strategy (others: :class:`StrategyHyperModel`).
HYPERMODELS: dict[str, type[StrategyHyperModel]] = {
    "two_phase": TwoPhaseHyperModel,
    "freeze_bottom": FreezeBottomHyperModel,
    "discriminative_lr": DiscriminativeLRHyperModel,
    "surgical": SurgicalHyperModel,
}
