"""The ``bss`` strategy: fine-tuning with Batch Spectral Shrinkage of the features
(Chen, Wang, Fu, Long & Wang, *Catastrophic Forgetting Meets Negative Transfer: Batch
Spectral Shrinkage for Safe Transfer Learning*, NeurIPS 2019)."""

from __future__ import annotations

from typing import Any, ClassVar

from tlbench.core.lazy import keras  # imported on first use: the parse-time check needs none
from tlbench.strategies.base import (
    TrainContext,
    TrainResult,
    positive_float,
    positive_int,
    register,
)
from tlbench.strategies.penalised import fit_penalised
from tlbench.strategies.phased import FineTune


@register
class BSS(FineTune):
    """Everything trainable at one learning rate (BatchNorm: the ``batchnorm`` policy), the
    training loss plus ``eta`` times the sum of the ``k`` smallest squared singular values
    of each training batch's matrix of pooled backbone features (batch × feature
    dimension): :func:`spectral_shrinkage`. Defaults ``eta = 0.001``, ``k = 1``: the
    Transfer-Learning-Library's (``trade_off``, ``k``)."""

    name = "bss"
    defaults: ClassVar[dict[str, Any]] = {"eta": 0.001, "k": 1, "batchnorm": "frozen"}

    @classmethod
    def check(cls, params: dict[str, Any]) -> None:
        positive_float(params, "eta")
        positive_int(params, "k")

    def train(self, ctx: TrainContext) -> TrainResult:
        eta, k = float(self.params["eta"]), int(self.params["k"])
        return fit_penalised(self, ctx, lambda features: eta * spectral_shrinkage(features, k))


def spectral_shrinkage(features: Any, k: int) -> Any:
    """Sum of the ``k`` smallest squared singular values of ``features`` (N × D).

    A matrix N × D has min(N, D) singular values (the reduced SVD): with fewer images in
    the batch than feature dimensions (few-shot), the smallest are the smallest of those
    N, as the reference implementation (Transfer-Learning-Library,
    ``BatchSpectralShrinkage``: ``torch.svd`` of the transposed features) takes them,
    not the D − N zeros of a full decomposition. A batch with at most ``k`` singular
    values sums them all."""
    ops = keras.ops
    values = ops.svd(ops.cast(features, "float32"), full_matrices=False, compute_uv=False)
    return ops.sum(ops.square(ops.sort(values)[:k]))
