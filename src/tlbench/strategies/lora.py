"""``lora``: low-rank adapters on a transformer backbone's dense and attention projections
(Hu et al., ICLR 2022), the head trains too.

Every ``Dense`` and ``EinsumDense`` layer inside the backbone's transformer blocks (the
attention's query, key, value and output projections and the MLP's layers of a keras-hub
ViT, DeiT, DINOv2, CLIP or SigLIP preset: :mod:`tlbench.models.backbones.hub`) gets
Keras's own adapter (``layer.enable_lora(rank, lora_alpha=alpha)``): its output becomes
``x @ (W + alpha / rank * A @ B)``, ``B`` starting at zero, so training starts from the
pretrained function. Only ``A``, ``B`` and the head train; every original weight of the
backbone (kernels, biases, normalisation, embeddings) stays as it was loaded, and the
backbone is called in inference mode (dropout off). A backbone without transformer
blocks (``keras.applications``, the custom CNNs, keras-hub CNNs) is an error naming it.

Parameters: ``rank`` (default 4), ``alpha`` (default: ``rank``, i.e. scale 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from tlbench.core.errors import SpecError
from tlbench.core.lazy import keras  # imported on first use: the parse-time check needs none
from tlbench.strategies.base import (
    Phase,
    Strategy,
    positive_float,
    positive_int,
    register,
    set_trainable,
)


@register
class LoRA(Strategy):
    """Low-rank adapters on the transformer blocks' projections, and the head."""

    name = "lora"
    defaults: ClassVar[dict[str, Any]] = {"rank": 4, "alpha": None, "batchnorm": "frozen"}
    batchnorm_values = ("frozen",)

    @classmethod
    def check(cls, params: dict[str, Any]) -> None:
        positive_int(params, "rank")
        positive_float(params, "alpha", allow_none=True)

    @property
    def bn_inference(self) -> bool:
        return True

    def phases(self, spec: Mapping[str, Any]) -> list[Phase]:
        training = spec["training"]
        return [Phase("lora", training["epochs"], training["learning_rate"])]

    def check_backbone(self, backbone: Any) -> None:
        adapted_layers(backbone)

    def set_layers(self, phase: Phase, backbone: Any) -> None:
        layers = adapted_layers(backbone)
        for layer in layers:
            if not layer.lora_enabled:
                layer.enable_lora(int(self.params["rank"]), lora_alpha=self.params["alpha"])
        set_trainable(backbone.model, True)  # the layers' flags; the variables' below
        adapters = {id(v) for layer in layers for v in lora_variables(layer)}
        for variable in backbone.model.weights:
            variable.trainable = id(variable) in adapters


def lora_variables(layer: Any) -> list[Any]:
    """The adapter matrices ``A`` and ``B`` of a LoRA-enabled layer."""
    return [layer.lora_kernel_a, layer.lora_kernel_b]


def adapted_layers(backbone: Any) -> list[Any]:
    """The ``Dense`` and ``EinsumDense`` layers inside the backbone's transformer blocks
    (every block but ``stem`` of a backbone whose ``depth_unit`` is ``block``); a
    :class:`SpecError` naming the backbone when it has none."""
    found: list[Any] = []
    if getattr(backbone, "depth_unit", "layer") == "block":
        members = {name for block, names in backbone.blocks if block != "stem" for name in names}
        for layer in backbone.model.layers:
            if layer.name in members:
                # Keras's own walk of nested layers (plain Layers have no public one)
                found += [
                    sub
                    for sub in layer._flatten_layers(include_self=True, recursive=True)
                    if isinstance(sub, keras.layers.Dense | keras.layers.EinsumDense)
                ]
    if not found:
        raise SpecError(
            f"strategy lora: backbone {backbone.name!r} has no transformer block with "
            "Dense or EinsumDense projections to adapt; lora needs a keras-hub transformer "
            "preset (backbone {preset: ...}: ViT, DeiT, DINOv2, CLIP or SigLIP)"
        )
    return found
