"""The ``l2_sp`` strategy: fine-tuning with the L2-SP penalty toward the pretrained weights
(Li, Grandvalet & Davoine, *Explicit Inductive Bias for Transfer Learning with
Convolutional Networks*, ICML 2018)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from tlbench.core.errors import SpecError
from tlbench.core.lazy import keras  # imported on first use: the parse-time check needs none
from tlbench.strategies.base import TrainContext, TrainResult, positive_float, register
from tlbench.strategies.penalised import fit_penalised
from tlbench.strategies.phased import FineTune


@register
class L2SP(FineTune):
    """Everything trainable at one learning rate (BatchNorm: the ``batchnorm`` policy), the
    training loss plus ``alpha/2 * ||w - w0||^2`` over the backbone's trainable weights
    (``w0``: their values when training starts, the pretrained ones) and
    ``beta/2 * ||w_head||^2`` over the new head's weights. Defaults ``alpha = beta = 0.01``:
    the Transfer-Learning-Library's (``trade_off_backbone``, ``trade_off_head``);
    ``beta: 0`` leaves the head unpenalised."""

    name = "l2_sp"
    defaults: ClassVar[dict[str, Any]] = {"alpha": 0.01, "beta": 0.01, "batchnorm": "frozen"}

    @classmethod
    def check(cls, params: dict[str, Any]) -> None:
        positive_float(params, "alpha")
        beta = params["beta"]
        if (
            isinstance(beta, bool)
            or not isinstance(beta, int | float)
            or not math.isfinite(beta)
            or beta < 0
        ):
            raise SpecError(f"strategy.params.beta: {beta!r} must be a number >= 0")

    def train(self, ctx: TrainContext) -> TrainResult:
        penalty = StartingPointPenalty(
            ctx.built.backbone.model, ctx.built.head, self.params["alpha"], self.params["beta"]
        )
        return fit_penalised(self, ctx, penalty)


class StartingPointPenalty:
    """``alpha/2 * sum((w - w0)^2)`` over ``backbone``'s trainable variables (``w0``: their
    values when this object is made) plus ``beta/2 * sum(w^2)`` over ``head``'s trainable
    variables, read when called (so in a training step, the step's values); the batch's
    features it is handed are not used. Which variables train is read at each call: a
    frozen variable never moves from ``w0`` and adds nothing."""

    def __init__(self, backbone: Any, head: Any, alpha: float, beta: float):
        self.backbone, self.head = backbone, head
        self.alpha, self.beta = float(alpha), float(beta)
        self.start = {
            id(v): np.array(keras.ops.convert_to_numpy(v), np.float32) for v in backbone.weights
        }

    def __call__(self, features: Any = None) -> Any:
        ops = keras.ops
        total = ops.zeros((), "float32")
        for v in self.backbone.trainable_variables:
            diff = ops.cast(v, "float32") - ops.convert_to_tensor(self.start[id(v)])
            total = total + 0.5 * self.alpha * ops.sum(ops.square(diff))
        for v in self.head.trainable_variables:
            total = total + 0.5 * self.beta * ops.sum(ops.square(ops.cast(v, "float32")))
        return total
