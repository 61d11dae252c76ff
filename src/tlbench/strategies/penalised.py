"""Fine-tuning with a penalty added to the training loss: what the regularised strategies
(``l2_sp``, ``bss``) share. Not a strategy itself.

:func:`penalised_model` is the classifier as it trains: the same layers and weights (the
pooled-features model, then the head) and, in training steps only, ``penalty(features)``
added through Keras's ``add_loss``, which the TensorFlow and the JAX trainers both add to
the loss they differentiate (on JAX inside its stateless step, where a variable read in
``call`` is the step's traced value). Validation steps call it with ``training=False``:
the validation loss, which early stopping watches, stays the classifier's cross-entropy,
as for every other strategy. The saved ``model.keras`` is the plain classifier.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from tlbench.core.lazy import keras  # imported on first use: the parse-time check needs none
from tlbench.strategies.base import Strategy, TrainContext, TrainResult


def penalised_model(features: Any, head: Any, penalty: Callable[[Any], Any]) -> Any:
    """A :class:`keras.Model` computing ``head(features(x))`` whose training steps add
    ``penalty(pooled features)`` (a scalar tensor) to the loss.

    A factory, so that this module imports Keras on first use only; computed in float32
    (under mixed precision too: a sum of squared weight differences in float16 would
    lose the small ones)."""

    class _Penalised(keras.Model):
        def __init__(self) -> None:
            super().__init__(name="penalised", dtype="float32")
            self.features = features
            self.head = head
            self.penalty = penalty

        @property
        def outputs(self) -> list:
            """The head's outputs (a functional model's attribute, which the trainer
            reads the class count from; Keras's training loop reads none)."""
            return self.head.outputs

        def call(self, x: Any, training: bool = False) -> Any:
            pooled = self.features(x, training=training)
            if training:
                self.add_loss(keras.ops.cast(self.penalty(pooled), "float32"))
            return self.head(pooled, training=training)

    return _Penalised()


def fit_penalised(
    strategy: Strategy, ctx: TrainContext, penalty: Callable[[Any], Any]
) -> TrainResult:
    """``strategy``'s phases fitted on :func:`penalised_model` (``ctx.built``'s layers under
    ``penalty``); the result carries the plain classifier."""
    built = ctx.built
    training = penalised_model(built.features, built.head, penalty)
    result = ctx.trainer.fit_phases(
        strategy, dataclasses.replace(ctx, built=dataclasses.replace(built, model=training))
    )
    if result.model is not None:
        result.model = built.model
    return result
