"""BatchNormalization layers told apart (:func:`is_batchnorm`), without importing Keras until
called: the parse-time check imports the strategies, which use it."""

from __future__ import annotations

from tlbench.core.lazy import keras  # imported on first use: the parse-time check needs none


def is_batchnorm(layer: keras.layers.Layer) -> bool:
    """Whether ``layer`` is a BatchNormalization layer."""
    return isinstance(layer, keras.layers.BatchNormalization)
