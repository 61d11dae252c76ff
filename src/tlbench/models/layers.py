"""Custom Keras layers of the models tlbench saves (``model.keras``).

Registered as ``tlbench>Name``; :func:`tlbench.models.backbones` imports this module
before loading an earlier run's model. Kept apart from the strategies that use
them so that loading a model imports no strategy code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras


@keras.saving.register_keras_serializable(package="tlbench")
class SelectClasses(keras.layers.Layer):
    """Pick source-class probabilities for each target class and renormalise (``direct``)."""

    def __init__(self, indices: Sequence[int], **kwargs: Any):
        super().__init__(**kwargs)
        self.indices = [int(i) for i in indices]

    def call(self, inputs):
        picked = keras.ops.take(keras.ops.cast(inputs, "float32"), self.indices, axis=-1)
        total = keras.ops.sum(picked, axis=-1, keepdims=True)
        return picked / keras.ops.maximum(total, 1e-12)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], len(self.indices))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "indices": self.indices}


@keras.saving.register_keras_serializable(package="tlbench")
class TokenPool(keras.layers.Layer):
    """A transformer's token sequence (batch, tokens, dim) -> one vector per image:
    ``cls`` takes the first token (the class token), ``mean`` averages every token."""

    def __init__(self, mode: str = "cls", **kwargs: Any):
        super().__init__(**kwargs)
        if mode not in ("cls", "mean"):
            raise ValueError(f"TokenPool mode {mode!r} is not valid; valid modes: cls, mean")
        self.mode = mode

    def call(self, inputs):
        if self.mode == "cls":
            return inputs[:, 0, :]
        return keras.ops.mean(inputs, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}
