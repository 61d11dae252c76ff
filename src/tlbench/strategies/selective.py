"""Parameter-efficient strategies that train chosen variables of the backbone, not layers:
``bitfit`` (the biases) and ``norm_only`` (the normalisation layers' scale and shift),
each with the head.

Which variables train is decided per variable (Keras 3's ``Variable.trainable``), after
every layer of the backbone is set trainable: a Conv2D's bias trains while its kernel
does not. ``batchnorm`` says what the BatchNormalization layers' moving statistics do,
as elsewhere: ``frozen`` (default) sets those layers non-trainable, so Keras 3 normalises
by their moving statistics and never updates them, and then marks the variables these
strategies train trainable again (a model trains every variable marked trainable,
whatever its layer's flag); ``train`` leaves the layers trainable (batch statistics in
training, moving statistics updated at ``training.batchnorm_momentum``). Unlike the
layer-wise strategies, ``frozen`` does not stop BatchNorm's shift (``bitfit``) or scale
and shift (``norm_only``) from training: they are what these strategies train.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from tlbench.core.lazy import keras  # imported on first use: the parse-time check needs none
from tlbench.strategies.base import Phase, Strategy, freeze_batchnorm, register, set_trainable

#: The normalisation layers of Keras whose variables are a scale (``gamma``) and a shift
#: (``beta``); :func:`is_normalisation` looks them up on first use.
NORMALISATIONS = (
    "BatchNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "RMSNormalization",
)


def is_normalisation(layer: keras.layers.Layer) -> bool:
    """Whether ``layer`` is one of Keras's :data:`NORMALISATIONS`."""
    kinds = tuple(getattr(keras.layers, name) for name in NORMALISATIONS)
    return isinstance(layer, kinds)


def owned_variables(model: keras.layers.Layer) -> Iterator[tuple[keras.layers.Layer, Any]]:
    """``(layer, variable)`` for every variable of ``model``, ``layer`` the innermost layer
    that holds it (nested layers of any kind, not only nested models)."""
    owner: dict[int, tuple[keras.layers.Layer, Any]] = {}
    # Keras walks parents before their sublayers: the innermost owner is written last
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for variable in layer.weights:
            owner[id(variable)] = (layer, variable)
    yield from owner.values()


class VariableSelection(Strategy):
    """A strategy that trains the backbone variables :meth:`keeps` says (and the head)."""

    defaults: ClassVar[dict[str, Any]] = {"batchnorm": "frozen"}

    def keeps(self, layer: keras.layers.Layer, variable: Any) -> bool:
        raise NotImplementedError

    def configure(self, phase: Phase, backbone: Any) -> dict[str, float]:
        # off, then on: Keras resets its variables' flags only when a layer's flag changes
        # (an earlier configure left some variables of trainable layers non-trainable)
        set_trainable(backbone.model, False)
        set_trainable(backbone.model, True)
        # the variables that can train at all (not moving statistics), before the policy
        weights = [(layer, v) for layer, v in owned_variables(backbone.model) if v.trainable]
        if self.batchnorm == "frozen":
            freeze_batchnorm(backbone.model)
        for layer, variable in weights:
            variable.trainable = self.keeps(layer, variable)
        return {}


@register
class BitFit(VariableSelection):
    """The backbone's biases train (every ``bias`` variable, and the shift ``beta`` of its
    normalisation layers), with the head; kernels, scales and statistics stay (Ben Zaken,
    Ravfogel & Goldberg, *BitFit*, ACL 2022)."""

    name = "bitfit"

    def keeps(self, layer: keras.layers.Layer, variable: Any) -> bool:
        return variable.name == "bias" or (is_normalisation(layer) and variable.name == "beta")


@register
class NormOnly(VariableSelection):
    """The backbone's normalisation layers train their scale and shift (BatchNorm's and
    LayerNorm's ``gamma`` and ``beta``, ...), with the head; everything else stays
    (Frankle, Schwab & Morcos, *Training BatchNorm and Only BatchNorm*, ICLR 2021)."""

    name = "norm_only"

    def keeps(self, layer: keras.layers.Layer, variable: Any) -> bool:
        return is_normalisation(layer)
