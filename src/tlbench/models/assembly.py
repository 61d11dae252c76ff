"""Model assembly: a run's classifier, untrained (:func:`build_model`).

Input (prepared H×W×3, float 0..255) -> augmentation (active in training only)
-> Resizing to ``training.input_size`` (when different) -> Preprocess(mode) ->
backbone (``training=False`` when the strategy keeps BatchNorm in inference mode)
-> global average pooling (4D features) -> head (a nested model named ``"head"``;
float32 softmax).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import keras

from tlbench.models.augment import build_augmentation as build
from tlbench.models.backbones.applications import build_backbone
from tlbench.models.batchnorm import is_batchnorm
from tlbench.models.inputs import input_pipeline, pool_features

if TYPE_CHECKING:  # annotations only: a strategy is handed in, the models layer imports none
    from tlbench.strategies.base import Phase, Strategy

NO_AUGMENTATION = "none"


def build_head(head: Mapping[str, Any], feature_dim: int, num_classes: int) -> keras.Model:
    """The classification head on pooled features, a model named ``"head"``.

    ``gap_dense``: Dropout -> Dense softmax; ``mlp``: [Dense relu -> Dropout] per
    hidden width -> Dense softmax. The output layer is float32 (mixed precision safe).
    """
    inputs = keras.Input(shape=(feature_dim,), name="features")
    x = inputs
    for i, width in enumerate(head["hidden"], start=1):
        x = keras.layers.Dense(width, activation="relu", name=f"head_dense{i}")(x)
        if head["dropout"] > 0:
            x = keras.layers.Dropout(head["dropout"], name=f"head_dropout{i}")(x)
    if not head["hidden"] and head["dropout"] > 0:
        x = keras.layers.Dropout(head["dropout"], name="head_dropout")(x)
    x = keras.layers.Dense(num_classes, name="head_logits", dtype="float32")(x)
    outputs = keras.layers.Activation("softmax", name="head_softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="head")


def build_classifier(
    backbone: Any,
    head: keras.Model | None,
    spec: Mapping[str, Any],
    image_shape: tuple[int, int, int],
    num_classes: int,
    strategy: Strategy,
    augmentation: keras.layers.Layer | None,
) -> tuple[keras.Model, keras.Model]:
    """The whole classifier (see the module docstring) and its head."""
    inputs, _, outputs, head = classifier_graph(
        backbone, head, spec, image_shape, num_classes, strategy, augmentation
    )
    return keras.Model(inputs, outputs, name="classifier"), head


def classifier_graph(
    backbone: Any,
    head: keras.Model | None,
    spec: Mapping[str, Any],
    image_shape: tuple[int, int, int],
    num_classes: int,
    strategy: Strategy,
    augmentation: keras.layers.Layer | None,
) -> tuple[Any, Any, Any, keras.Model]:
    """The classifier's symbolic graph: (image input, pooled features the head reads,
    class probabilities, head)."""
    training = spec["training"]
    inputs = keras.Input(shape=image_shape, name="image")
    x = inputs
    if augmentation is not None:
        x = augmentation(x)
    x = input_pipeline(
        x,
        training["input_size"],
        training["interpolation"],
        backbone.preprocess_mode,
    )
    x = backbone.model(x, training=False) if strategy.bn_inference else backbone.model(x)
    features = pool_features(x)
    if head is None:
        head = build_head(spec["head"], int(features.shape[-1]), num_classes)
    return inputs, features, head(features), head


@dataclass
class BuiltModel:
    """A run's classifier before training (see :func:`build_model`).

    ``features``: image -> the pooled features its head reads, the classifier's own
    layers (no weights of its own): what a penalty on the features sees.
    """

    model: keras.Model
    head: keras.Model
    backbone: Any
    augmentation: keras.layers.Layer | None
    phases: list[Phase]
    features: keras.Model | None = None


def set_batchnorm_momentum(model: keras.Model, momentum: float | None) -> int:
    """Give every BatchNormalization layer of ``model`` (nested ones too) that trains
    (``trainable`` now) ``momentum``; frozen ones keep their own.

    Their moving statistics, which inference mode (validation, test, frozen
    phases) reads, follow the training batches at this rate. Keras applications
    ship 0.99 or 0.999: after a few hundred steps from random init their
    statistics still mostly hold the initial values, and the model scores high
    in training mode and at chance in inference mode (seed 000's train/test
    signature). ``None`` leaves the model's own. Returns the number of layers set.
    """
    if momentum is None:
        return 0
    count = 0
    for layer in _all_layers(model):
        if is_batchnorm(layer) and layer.trainable:
            layer.momentum = float(momentum)
            count += 1
    return count


def _all_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """The layers of ``model`` and of the models nested in it, depth first."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def build_model(
    spec: Mapping[str, Any],
    strategy: Strategy,
    image_shape: tuple[int, int, int],
    num_classes: int,
) -> BuiltModel:
    """Build backbone and classifier of a resolved spec, untrained.

    The strategy's layer counts and block names are checked against the backbone
    here, before any training. Also the build step of :mod:`tlbench.tuning`'s trials.
    """

    size = spec["training"]["input_size"]
    backbone = build_backbone(spec["backbone"], (size, size, 3))
    phases = strategy.phases(spec)
    for phase in phases:  # validate layer counts / block names before any training
        strategy.configure(phase, backbone)
        # the BatchNorm layers this phase trains (strategy.batchnorm) get the momentum
        set_batchnorm_momentum(backbone.model, spec["training"]["batchnorm_momentum"])
    strategy.check_backbone(backbone)
    augmentation = build_augmentation(spec, image_shape[:2])
    inputs, features, outputs, head = classifier_graph(
        backbone, None, spec, image_shape, num_classes, strategy, augmentation
    )
    model = keras.Model(inputs, outputs, name="classifier")
    features_model = keras.Model(inputs, features, name="features")
    return BuiltModel(model, head, backbone, augmentation, phases, features_model)


def build_augmentation(
    spec: Mapping[str, Any], image_size: tuple[int, int]
) -> keras.layers.Layer | None:
    aug = spec["augmentation"]
    if aug["name"] == NO_AUGMENTATION:
        return None

    return build(aug["name"], aug["params"], image_size)
