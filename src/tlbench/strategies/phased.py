"""The phase-declared strategies: each says which backbone layers train, at which
learning rate, in which phases (:meth:`Strategy.phases`, :meth:`Strategy.configure`);
:meth:`Strategy.train` (the default) fits those phases through the trainer.

See :mod:`tlbench.strategies` for the BatchNorm policy and the layer counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from tlbench.core.errors import SpecError
from tlbench.strategies.base import (
    REQUIRED,
    Phase,
    Strategy,
    backbone_layers,
    block_names,
    block_span,
    check_count_or_block,
    layer_multipliers,
    positive_float,
    positive_int,
    register,
    set_trainable,
)


@register
class Scratch(Strategy):
    """The architecture with random initialisation, everything trainable."""

    name = "scratch"
    forces_weights = "none"


@register
class FeatureExtraction(Strategy):
    """Backbone frozen (BatchNorm in inference mode); only the new head trains.

    ``batchnorm``: ``frozen`` only (recorded like the other strategies' policy).
    """

    name = "feature_extraction"
    head_only_phase = True
    defaults: ClassVar[dict[str, Any]] = {"batchnorm": "frozen"}
    batchnorm_values = ("frozen",)

    @property
    def bn_inference(self) -> bool:
        return True

    def phases(self, spec: Mapping[str, Any]) -> list[Phase]:
        training = spec["training"]
        return [Phase("head", training["epochs"], training["learning_rate"], head_only=True)]

    def set_layers(self, phase: Phase, backbone: Any) -> None:
        set_trainable(backbone.model, False)


@register
class FineTune(Strategy):
    """Pretrained initialisation, everything trainable at one learning rate
    (BatchNorm: the ``batchnorm`` policy, default ``frozen``)."""

    name = "fine_tune"
    defaults: ClassVar[dict[str, Any]] = {"batchnorm": "frozen"}


@register
class TwoPhase(Strategy):
    """Phase 1: feature extraction; phase 2: the top layers unfrozen at a lower rate.

    ``unfreeze`` is a layer count (whole transformer blocks on a keras-hub transformer)
    or a block name ("this block and everything above it"); with ``batchnorm: frozen`` (default) the BatchNormalization
    layers among them stay frozen and the backbone is called in inference mode,
    with ``train`` they train too. Phase 2's learning rate
    is ``phase2_learning_rate`` or ``learning_rate * phase2_lr_factor``.
    Defaults: ``phase1_epochs = epochs // 2`` (at least 1),
    ``phase2_epochs = epochs - phase1_epochs`` (at least 1).
    """

    name = "two_phase"
    head_only_phase = True
    defaults = {
        "unfreeze": 20,
        "phase1_epochs": None,
        "phase2_epochs": None,
        "phase2_learning_rate": None,
        "phase2_lr_factor": 0.1,
        "batchnorm": "frozen",
    }

    @property
    def bn_inference(self) -> bool:
        return self.batchnorm == "frozen"

    @classmethod
    def check(cls, params: dict[str, Any]) -> None:
        check_count_or_block(params, "unfreeze", cls.name)
        positive_int(params, "phase1_epochs", allow_none=True)
        positive_int(params, "phase2_epochs", allow_none=True)
        positive_float(params, "phase2_learning_rate", allow_none=True)
        positive_float(params, "phase2_lr_factor")

    def phases(self, spec: Mapping[str, Any]) -> list[Phase]:
        training = spec["training"]
        epochs, lr = training["epochs"], training["learning_rate"]
        p1 = self.params["phase1_epochs"] or max(1, epochs // 2)
        p2 = self.params["phase2_epochs"] or max(1, epochs - p1)
        lr2 = self.params["phase2_learning_rate"] or lr * self.params["phase2_lr_factor"]
        return [Phase("phase1", p1, lr, head_only=True), Phase("phase2", p2, lr2)]

    def unfrozen_count(self, backbone: Any) -> int:
        """How many top layers phase 2 unfreezes (BatchNorm among them: the policy)."""
        layers = backbone_layers(backbone.model)
        unfreeze = self.params["unfreeze"]
        if isinstance(unfreeze, str):
            first, _ = block_span(backbone, unfreeze, "unfreeze")
            return len(layers) - first
        return _within_depth(unfreeze, "unfreeze", backbone, layers)

    def set_layers(self, phase: Phase, backbone: Any) -> None:
        count = self.unfrozen_count(backbone)  # validated in phase 1 too
        if phase.head_only:
            set_trainable(backbone.model, False)
            return
        set_trainable(backbone.model, True)
        layers = backbone_layers(backbone.model)
        start = len(layers) - count
        for i, layer in enumerate(layers):
            layer.trainable = i >= start


def _within_depth(
    count: int, key: str, backbone: Any, layers: list, *, from_top: bool = True
) -> int:
    """How many layers ``count`` (``strategy.params.<key>``) covers, from the top (or
    the bottom): ``count`` layers, or on a backbone whose ``depth_unit`` is ``block`` (a
    keras-hub transformer) ``count`` whole transformer blocks, from the bottom with the
    stem before them; an error naming the value and the backbone's depth when it has
    fewer."""
    if getattr(backbone, "depth_unit", "layer") == "block":
        blocks = [name for name in block_names(backbone) if name != "stem"]
        if count > len(blocks):
            raise SpecError(
                f"strategy.params.{key}: {count} exceeds the depth of backbone "
                f"{backbone.name!r} ({len(blocks)} transformer blocks; an integer counts "
                "whole blocks)"
            )
        if count == 0:
            return 0
        if from_top:
            first, _ = block_span(backbone, blocks[len(blocks) - count], key)
            return len(layers) - first
        _, last = block_span(backbone, blocks[count - 1], key)
        return last + 1
    if count > len(layers):
        raise SpecError(
            f"strategy.params.{key}: {count} exceeds the depth of backbone "
            f"{backbone.name!r} ({len(layers)} layers)"
        )
    return count


@register
class FreezeBottom(Strategy):
    """The first ``frozen`` layers (a count, or a block name: that block and all below) frozen.

    BatchNorm layers of the frozen part stay frozen; those of the part that
    trains follow the ``batchnorm`` policy (default ``frozen``).
    """

    name = "freeze_bottom"
    defaults = {"frozen": REQUIRED, "batchnorm": "frozen"}

    @classmethod
    def check(cls, params: dict[str, Any]) -> None:
        check_count_or_block(params, "frozen", cls.name)

    def frozen_count(self, backbone: Any) -> int:
        layers = backbone_layers(backbone.model)
        frozen = self.params["frozen"]
        if isinstance(frozen, str):
            _, last = block_span(backbone, frozen, "frozen")
            return last + 1
        return _within_depth(frozen, "frozen", backbone, layers, from_top=False)

    def set_layers(self, phase: Phase, backbone: Any) -> None:
        count = self.frozen_count(backbone)
        set_trainable(backbone.model, True)
        for i, layer in enumerate(backbone_layers(backbone.model)):
            layer.trainable = i >= count


@register
class DiscriminativeLR(Strategy):
    """Everything trainable, earlier blocks at smaller learning rates.

    Either ``decay`` (the top block at factor 1, the one below at ``decay``,
    then ``decay**2``, ...) or explicit ``multipliers: {block name: factor}``
    (blocks not listed: 1). Layers outside every block take the factor of the
    block before them (layers before the first block: the first block's).
    BatchNorm: the ``batchnorm`` policy (default ``frozen``).
    """

    name = "discriminative_lr"
    defaults = {"decay": 0.5, "multipliers": None, "batchnorm": "frozen"}

    @classmethod
    def check(cls, params: dict[str, Any]) -> None:
        positive_float(params, "decay")
        multipliers = params["multipliers"]
        if multipliers is None:
            return
        if not isinstance(multipliers, Mapping) or not multipliers:
            raise SpecError(
                f"strategy.params.multipliers: {multipliers!r} must be a mapping "
                "{block name: factor}"
            )
        for block, factor in multipliers.items():
            if isinstance(factor, bool) or not isinstance(factor, int | float) or factor < 0:
                raise SpecError(
                    f"strategy.params.multipliers.{block}: {factor!r} must be a number >= 0"
                )

    def layer_blocks(self, backbone: Any) -> list[int]:
        """Index into ``backbone.blocks`` of every backbone layer."""
        if not backbone.blocks:
            raise SpecError(
                f"strategy {self.name!r}: backbone {backbone.name!r} declares no blocks"
            )
        owner = {layer: i for i, (_, members) in enumerate(backbone.blocks) for layer in members}
        current, out = 0, []
        for layer in backbone_layers(backbone.model):
            current = owner.get(layer.name, current)
            out.append(current)
        return out

    def block_factors(self, backbone: Any) -> list[float]:
        """Learning-rate factor of each block (bottom to top)."""
        names = block_names(backbone)
        explicit = self.params["multipliers"]
        if explicit is not None:
            for block in explicit:
                if block not in names:
                    raise SpecError(
                        f"strategy.params.multipliers.{block}: unknown block of backbone "
                        f"{backbone.name!r}; valid blocks: {', '.join(names)}"
                    )
            return [float(explicit.get(name, 1.0)) for name in names]
        decay = float(self.params["decay"])
        top = len(names) - 1
        return [decay ** (top - i) for i in range(len(names))]

    def multipliers(self, phase: Phase, backbone: Any) -> dict[str, float]:
        factors = self.block_factors(backbone)
        layers = backbone_layers(backbone.model)
        return layer_multipliers(layers, [factors[b] for b in self.layer_blocks(backbone)])
