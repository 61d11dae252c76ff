"""The ``lp_ft`` strategy: linear probing, then fine-tuning from the probe (Kumar et al.,
*Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution*,
ICLR 2022).

First the ``linear_probe`` strategy's probe (:func:`tlbench.strategies.linear_probe.fit_probe`:
logistic regression on the frozen backbone's features, C by cross-validation on train);
its solution becomes the head (one Dense layer holding the probe's ``W, b``,
:func:`tlbench.strategies.linear_probe.probe_head`), so the classifier predicts the probe's
probabilities when fine-tuning starts. Then the whole network fine-tunes at a small
learning rate, ``ft_learning_rate`` or ``training.learning_rate * ft_lr_factor``, for
``training.epochs`` (BatchNorm: the ``batchnorm`` policy, default ``frozen``). A head
that starts at the probe's optimum sends small gradients into the backbone at first,
which is the paper's argument against a randomly initialised head (``fine_tune``) or one
trained by SGD for a few epochs (``two_phase``).

``metrics.json`` records the probe as ``linear_probe`` does (``chosen_C``, ``probe_*``,
``features``). The spec's ``head`` is not used (the head is the probe's Dense layer).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from tlbench.models.probe import MAX_ITER
from tlbench.strategies.base import (
    Phase,
    Strategy,
    TrainContext,
    TrainResult,
    positive_float,
    register,
)
from tlbench.strategies.linear_probe import LinearProbe, fit_probe, probe_extras, probe_head


@register
class LpFt(Strategy):
    """The linear probe's solution as the head, then everything fine-tunes.

    ``grid``, ``max_iter``: the probe's (as ``linear_probe``); ``ft_learning_rate``
    (null: ``training.learning_rate * ft_lr_factor``, default factor 0.1): the rate of
    the fine-tuning phase; ``batchnorm``: ``frozen`` (default) or ``train``.
    """

    name = "lp_ft"
    #: The probe reads the frozen backbone's features: its runs get the feature cache.
    features_only = True
    defaults: ClassVar[dict[str, Any]] = {
        "grid": None,
        "max_iter": MAX_ITER,
        "ft_learning_rate": None,
        "ft_lr_factor": 0.1,
        "batchnorm": "frozen",
    }

    @classmethod
    def check(cls, params: dict[str, Any]) -> None:
        LinearProbe.check(params)
        positive_float(params, "ft_learning_rate", allow_none=True)
        positive_float(params, "ft_lr_factor")

    def phases(self, spec: Mapping[str, Any]) -> list[Phase]:
        training = spec["training"]
        rate = self.params["ft_learning_rate"] or (
            training["learning_rate"] * self.params["ft_lr_factor"]
        )
        return [Phase("fine_tune", training["epochs"], rate)]

    def train(self, ctx: TrainContext) -> TrainResult:
        # imported here: tlbench.models.assembly imports tlbench.strategies.base, whose package
        # (this one) imports this module first
        from tlbench.models.assembly import build_classifier

        built = ctx.built
        fit, cached = fit_probe(self.params, ctx)
        model, head = build_classifier(
            built.backbone,
            probe_head(fit),
            ctx.spec,
            ctx.image_shape,
            fit.num_classes,
            self,
            built.augmentation,
        )
        from_probe = dataclasses.replace(built, model=model, head=head)
        result = ctx.trainer.fit_phases(self, dataclasses.replace(ctx, built=from_probe))
        result.extras.update(probe_extras(fit, cached))
        return result
