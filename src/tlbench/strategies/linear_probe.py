"""The ``linear_probe`` strategy: L2-regularised multinomial logistic regression on the
frozen backbone's pooled features (Kornblith, Shlens & Le, CVPR 2019), fitted by
:func:`tlbench.models.probe.fit_linear_probe`.

The features of the train and val splits come from the trainer (the feature cache
when the spec names one); the probe chooses C of ``grid`` (default 12 values,
1e-6 ... 1e5) by stratified cross-validation on the TRAIN split (up to 5 folds,
standardised on each training fold; ties: the smaller C), then fits L-BFGS
``LogisticRegression`` with it on the whole train split. The validation split
plays no part in the choice, so its accuracy compares honestly with the other
strategies'. The test split is not part of the training context: the engine reads
it once, in the final evaluation. ``metrics.json`` records ``chosen_C`` and the
probe's record (``probe_grid``, ``probe_cv_accuracy`` and ``probe_cv_fold_accuracy``
per C, ``probe_cv_folds``, ``probe_converged``, ``probe_val_accuracy``, ...).

The saved ``model.keras`` takes images like every run's: the frozen backbone
(inference mode) and pooling, then a head whose Dense layer holds the probe's
``W, b`` (the standardisation folded in), so it predicts the probe's probabilities.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from tlbench.core.errors import SpecError
from tlbench.core.lazy import keras  # imported on first use: the parse-time check needs none
from tlbench.models.probe import MAX_ITER, ProbeFit, check_grid, fit_linear_probe
from tlbench.strategies.base import (
    Phase,
    Strategy,
    TrainContext,
    TrainResult,
    positive_int,
    register,
    set_trainable,
)


@register
class LinearProbe(Strategy):
    """Logistic regression on frozen features, C chosen by cross-validation on train.

    ``grid``: the C values tried (null: :data:`tlbench.models.probe.DEFAULT_GRID`);
    ``max_iter``: L-BFGS iterations per fit. The backbone and its BatchNorm layers
    stay frozen (``batchnorm``: ``frozen`` only); the spec's ``head`` is not used
    (the probe is one Dense layer) and augmentation must be ``none`` (the probe
    fits on features computed once).
    """

    name = "linear_probe"
    defaults: ClassVar[dict[str, Any]] = {"grid": None, "max_iter": MAX_ITER, "batchnorm": "frozen"}
    batchnorm_values = ("frozen",)
    features_only = True

    @classmethod
    def check(cls, params: dict[str, Any]) -> None:
        try:
            check_grid(params["grid"])
        except ValueError as error:
            raise SpecError(f"strategy.params.{error}") from None
        positive_int(params, "max_iter")

    @property
    def bn_inference(self) -> bool:
        return True

    def phases(self, spec: Mapping[str, Any]) -> list[Phase]:
        return []

    def train(self, ctx: TrainContext) -> TrainResult:
        # imported here: tlbench.models.assembly imports tlbench.strategies.base, whose package
        # (this one) imports this module first
        from tlbench.models.assembly import build_classifier

        built = ctx.built
        if built.augmentation is not None:
            raise SpecError(
                f"augmentation.name: {ctx.spec['augmentation']['name']!r}: strategy "
                "'linear_probe' fits on features computed once; use augmentation 'none'"
            )
        fit, cached = fit_probe(self.params, ctx)
        model, head = build_classifier(
            built.backbone, probe_head(fit), ctx.spec, ctx.image_shape, fit.num_classes, self, None
        )
        return ctx.result(
            model,
            pretrained=bool(built.backbone.pretrained),
            head=head,
            head_features=cached,
            # fit_seconds: as feature_extraction's head fit on cached features
            extras={**probe_extras(fit, cached), "fit_seconds": round(fit.train_seconds, 4)},
        )


def fit_probe(params: Mapping[str, Any], ctx: TrainContext) -> tuple[ProbeFit, Any]:
    """The probe of ``params`` (``grid``, ``max_iter``) on the frozen backbone's features of
    the train split (C by cross-validation on train), and those features (``ctx.trainer``'s:
    the feature cache when the spec names one); also ``lp_ft``'s first step."""
    set_trainable(ctx.built.backbone.model, False)
    cached = ctx.trainer.features(ctx)
    (_, y_train), (_, y_val) = ctx.splits["train"], ctx.splits["val"]
    fit = fit_linear_probe(
        cached.train,
        np.asarray(y_train),
        cached.val,
        np.asarray(y_val),
        grid=params["grid"],
        seed=ctx.spec["seed"],
        max_iter=params["max_iter"],
        num_classes=len(ctx.classes),
    )
    return fit, cached


def probe_extras(fit: ProbeFit, cached: Any) -> dict[str, Any]:
    """The probe's keys of ``metrics.json``: the features' source, ``chosen_C`` and
    :meth:`ProbeFit.record`."""
    return {"features": cached.info, "chosen_C": fit.C, **fit.record()}


def probe_head(fit: ProbeFit) -> keras.Model:
    """The probe as a Keras head (``"head"``: features -> Dense -> softmax, float32)
    whose Dense layer holds ``fit.W`` and ``fit.b``."""
    inputs = keras.Input(shape=(fit.W.shape[0],), name="features")
    dense = keras.layers.Dense(fit.num_classes, name="head_logits", dtype="float32")
    logits = dense(inputs)
    outputs = keras.layers.Activation("softmax", name="head_softmax", dtype="float32")(logits)
    head = keras.Model(inputs, outputs, name="head")
    dense.set_weights([fit.W.astype(np.float32), fit.b.astype(np.float32)])
    return head
