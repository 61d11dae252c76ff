"""Transfer strategies: which backbone layers train, at which learning rate, in which phases.

Each strategy is a small :class:`Strategy` subclass registered in
:data:`STRATEGIES`. It declares

* ``trains`` — whether it takes gradient steps at all (``direct`` does not);
* ``forces_weights`` — weights it uses whatever the spec says; ``scratch`` sets
  ``"none"`` (random init);
* ``bn_inference`` — whether the backbone is called with ``training=False``
  (``feature_extraction``, and ``two_phase`` with ``batchnorm: frozen``);
* ``defaults`` — its parameters with default values (``REQUIRED`` marks one
  without a default); unknown or bad parameters are a :class:`SpecError`;
* :meth:`Strategy.phases` — the training phases (name, epochs, learning rate);
* :meth:`Strategy.configure` — given a phase and the model's backbone, sets
  ``layer.trainable`` (:meth:`Strategy.set_layers`, then the BatchNorm policy)
  and returns learning-rate multipliers ``{variable.path: factor}``
  (:meth:`Strategy.multipliers`; variables not listed train at factor 1).

BatchNorm policy: every strategy that starts from pretrained weights and trains
takes ``batchnorm: frozen | train``. ``frozen`` (the default, as in the keras-io
transfer-learning guide) sets every BatchNormalization layer of the backbone
non-trainable in every phase, whatever else trains: Keras 3 then runs it in
inference mode (its moving statistics are read, never updated) and its
gamma/beta do not move. ``train`` leaves BatchNorm layers as trainable as the
layers around them: those in a part that trains normalise by batch statistics
and update their moving statistics (``training.batchnorm_momentum`` applies to
these only). ``scratch`` and ``autoencoder`` (random init) always train theirs;
``feature_extraction`` trains no backbone layer, so only ``frozen`` is valid.

Layer counts (``unfreeze``, ``frozen``) count the backbone model's layers in
order, input layers excluded; a block name refers to ``Backbone.blocks``
(bottom to top).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from tlbench.errors import SpecError
from tlbench.lazy import keras  # imported on first use: the parse-time check needs none
from tlbench.registry import Registry

REQUIRED = object()
#: Values of the ``batchnorm`` strategy parameter (see the module docstring).
BATCHNORM_POLICIES = ("frozen", "train")


@dataclass(frozen=True)
class Phase:
    """One training phase: ``head_only`` means the whole backbone is frozen."""

    name: str
    epochs: int
    learning_rate: float
    head_only: bool = False


class Strategy:
    """Base class of transfer strategies (see the module docstring)."""

    name: ClassVar[str] = ""
    trains: ClassVar[bool] = True
    forces_weights: ClassVar[str | None] = None
    #: Backbone weights when the spec's backbone entry does not name any
    #: (None: the spec default, ``imagenet``).
    default_weights: ClassVar[str | None] = None
    #: Valid values of the ``batchnorm`` parameter, where ``defaults`` has one.
    batchnorm_values: ClassVar[tuple[str, ...]] = BATCHNORM_POLICIES
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, params: Mapping[str, Any] | None = None):
        self.params = self.resolve_params(params)

    @classmethod
    def resolve_params(cls, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Fill defaults and validate; errors name ``strategy.params.<key>``."""
        params = dict(params or {})
        unknown = sorted(set(params) - set(cls.defaults))
        if unknown:
            valid = ", ".join(sorted(cls.defaults)) or "(none)"
            raise SpecError(
                f"strategy.params.{unknown[0]}: unknown parameter of strategy {cls.name!r}; "
                f"valid parameters: {valid}"
            )
        resolved = {}
        for key, default in cls.defaults.items():
            if key not in params and default is REQUIRED:
                raise SpecError(
                    f"strategy.params.{key}: strategy {cls.name!r} needs this parameter"
                )
            resolved[key] = params.get(key, default)
        if "batchnorm" in resolved:
            _check_batchnorm(resolved, cls.batchnorm_values, cls.name)
        cls.check(resolved)
        return resolved

    @classmethod
    def check(cls, params: dict[str, Any]) -> None:
        """Validate resolved parameters (subclasses raise :class:`SpecError`)."""

    @property
    def batchnorm(self) -> str:
        """The BatchNorm policy: the ``batchnorm`` parameter, else ``train``."""
        return self.params.get("batchnorm", "train")

    @property
    def bn_inference(self) -> bool:
        """Whether the classifier calls the backbone with ``training=False``."""
        return False

    def phases(self, spec: Mapping[str, Any]) -> list[Phase]:
        """Training phases of a run with the resolved ``spec``."""
        training = spec["training"]
        return [Phase("train", training["epochs"], training["learning_rate"])]

    def configure(self, phase: Phase, backbone: Any) -> dict[str, float]:
        """Set ``trainable`` flags of the backbone for ``phase`` (the strategy's layers,
        then the BatchNorm policy); return lr multipliers."""
        self.set_layers(phase, backbone)
        if self.batchnorm == "frozen":
            freeze_batchnorm(backbone.model)
        return self.multipliers(phase, backbone)

    def set_layers(self, phase: Phase, backbone: Any) -> None:
        """Set the ``trainable`` flags of ``phase`` (before the BatchNorm policy)."""
        set_trainable(backbone.model, True)

    def multipliers(self, phase: Phase, backbone: Any) -> dict[str, float]:
        """Learning-rate multipliers of ``phase`` (after the trainable flags are set)."""
        return {}


STRATEGIES: Registry[type[Strategy]] = Registry("strategy")


def _register(cls: type[Strategy]) -> type[Strategy]:
    return STRATEGIES.add(cls.name, cls)


# --------------------------------------------------------------------------- helpers


def backbone_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The backbone model's layers in order, input layers excluded."""
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def set_trainable(layer: keras.layers.Layer, value: bool) -> None:
    """Set ``trainable`` on ``layer`` and, explicitly, on every nested layer.

    (Keras skips the recursion when a model's own flag already has the value,
    which would leave sublayers frozen by an earlier phase frozen.)
    """
    layer.trainable = value
    for sub in getattr(layer, "layers", None) or []:
        set_trainable(sub, value)


def is_batchnorm(layer: keras.layers.Layer) -> bool:
    """Whether ``layer`` is a BatchNormalization layer."""
    return isinstance(layer, keras.layers.BatchNormalization)


def nested_layers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """The layers nested in ``layer`` (as :func:`set_trainable` walks them), depth first."""
    out = []
    for sub in getattr(layer, "layers", None) or []:
        out.append(sub)
        out.extend(nested_layers(sub))
    return out


def freeze_batchnorm(model: keras.layers.Layer) -> int:
    """Set every BatchNormalization layer nested in ``model`` non-trainable (Keras 3 then
    runs it in inference mode: moving statistics read, not updated); return how many."""
    layers = [layer for layer in nested_layers(model) if is_batchnorm(layer)]
    for layer in layers:
        layer.trainable = False
    return len(layers)


def _check_batchnorm(params: dict[str, Any], valid: Sequence[str], strategy: str) -> None:
    value = params["batchnorm"]
    if value not in valid:
        why = (
            f" ({strategy} trains no backbone layer: its BatchNorm layers stay frozen)"
            if value in BATCHNORM_POLICIES
            else ""
        )
        raise SpecError(
            f"strategy.params.batchnorm: {value!r} is not valid for strategy {strategy!r}"
            f"{why}; valid values: {', '.join(valid)}"
        )


def block_names(backbone: Any) -> list[str]:
    return [name for name, _ in backbone.blocks]


def _block_span(backbone: Any, block: str, key: str) -> tuple[int, int]:
    """(first, last) index in :func:`backbone_layers` of the layers of ``block``."""
    names = block_names(backbone)
    if block not in names:
        raise SpecError(
            f"strategy.params.{key}: unknown block {block!r} of backbone {backbone.name!r}; "
            f"valid blocks: {', '.join(names) or '(the backbone declares no blocks)'}"
        )
    members = set(dict(backbone.blocks)[block])
    indices = [
        i for i, layer in enumerate(backbone_layers(backbone.model)) if layer.name in members
    ]
    if not indices:
        raise SpecError(f"strategy.params.{key}: block {block!r} has no layers in the backbone")
    return min(indices), max(indices)


def _check_count_or_block(params: dict[str, Any], key: str, strategy: str) -> None:
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SpecError(
            f"strategy.params.{key}: {value!r} is neither a layer count nor a block name "
            f"(strategy {strategy!r})"
        )
    if isinstance(value, int) and value < 0:
        raise SpecError(f"strategy.params.{key}: {value} must be >= 0")


def _positive_int(params: dict[str, Any], key: str, *, allow_none: bool = False) -> None:
    value = params[key]
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"strategy.params.{key}: {value!r} must be an integer >= 1")


def _positive_float(params: dict[str, Any], key: str, *, allow_none: bool = False) -> None:
    value = params[key]
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise SpecError(f"strategy.params.{key}: {value!r} must be a number > 0")


def layer_multipliers(layers: Sequence[keras.layers.Layer], factors: Sequence[float]) -> dict:
    """``{variable.path: factor}`` for the trainable variables of each layer (factor != 1)."""
    out: dict[str, float] = {}
    for layer, factor in zip(layers, factors, strict=True):
        if factor == 1.0:
            continue
        for variable in layer.trainable_variables:
            out[variable.path] = float(factor)
    return out


# --------------------------------------------------------------------------- strategies


@_register
class Direct(Strategy):
    """The source model's own classifier; target classes mapped to source classes.

    Each target class is mapped to a source class by majority prediction on
    its TRAIN images; target probabilities are the mapped source probabilities
    renormalised. No gradient step. ``mapping``:

    * ``one_to_one`` (default): distinct source classes, chosen to maximise the
      number of train images predicted as their class's source class (an
      assignment problem; each class keeps its majority source class when
      those are already distinct). Needs at least as many source classes.
    * ``majority``: each target class takes its own most predicted source
      class; several target classes may share one and then tie.
    """

    name = "direct"
    trains = False
    defaults: ClassVar[dict[str, Any]] = {"mapping": "one_to_one"}
    MAPPINGS: ClassVar[tuple[str, ...]] = ("one_to_one", "majority")

    @classmethod
    def check(cls, params: dict[str, Any]) -> None:
        if params["mapping"] not in cls.MAPPINGS:
            raise SpecError(
                f"strategy.params.mapping: unknown mapping {params['mapping']!r}; "
                f"valid mappings: {', '.join(cls.MAPPINGS)}"
            )

    def phases(self, spec: Mapping[str, Any]) -> list[Phase]:
        return []


@_register
class Scratch(Strategy):
    """The architecture with random initialisation, everything trainable."""

    name = "scratch"
    forces_weights = "none"


@_register
class FeatureExtraction(Strategy):
    """Backbone frozen (BatchNorm in inference mode); only the new head trains.

    ``batchnorm``: ``frozen`` only (recorded like the other strategies' policy).
    """

    name = "feature_extraction"
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


@_register
class FineTune(Strategy):
    """Pretrained initialisation, everything trainable at one learning rate
    (BatchNorm: the ``batchnorm`` policy, default ``frozen``)."""

    name = "fine_tune"
    defaults: ClassVar[dict[str, Any]] = {"batchnorm": "frozen"}


@_register
class TwoPhase(Strategy):
    """Phase 1: feature extraction; phase 2: the top layers unfrozen at a lower rate.

    ``unfreeze`` is a layer count or a block name ("this block and everything
    above it"); with ``batchnorm: frozen`` (default) the BatchNormalization
    layers among them stay frozen and the backbone is called in inference mode,
    with ``train`` they train too. Phase 2's learning rate
    is ``phase2_learning_rate`` or ``learning_rate * phase2_lr_factor``.
    Defaults: ``phase1_epochs = epochs // 2`` (at least 1),
    ``phase2_epochs = epochs - phase1_epochs`` (at least 1).
    """

    name = "two_phase"
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
        _check_count_or_block(params, "unfreeze", cls.name)
        _positive_int(params, "phase1_epochs", allow_none=True)
        _positive_int(params, "phase2_epochs", allow_none=True)
        _positive_float(params, "phase2_learning_rate", allow_none=True)
        _positive_float(params, "phase2_lr_factor")

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
            first, _ = _block_span(backbone, unfreeze, "unfreeze")
            return len(layers) - first
        if unfreeze > len(layers):
            raise SpecError(
                f"strategy.params.unfreeze: {unfreeze} exceeds the depth of backbone "
                f"{backbone.name!r} ({len(layers)} layers)"
            )
        return unfreeze

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


@_register
class FreezeBottom(Strategy):
    """The first ``frozen`` layers (a count, or a block name: that block and all below) frozen.

    BatchNorm layers of the frozen part stay frozen; those of the part that
    trains follow the ``batchnorm`` policy (default ``frozen``).
    """

    name = "freeze_bottom"
    defaults = {"frozen": REQUIRED, "batchnorm": "frozen"}

    @classmethod
    def check(cls, params: dict[str, Any]) -> None:
        _check_count_or_block(params, "frozen", cls.name)

    def frozen_count(self, backbone: Any) -> int:
        layers = backbone_layers(backbone.model)
        frozen = self.params["frozen"]
        if isinstance(frozen, str):
            _, last = _block_span(backbone, frozen, "frozen")
            return last + 1
        if frozen > len(layers):
            raise SpecError(
                f"strategy.params.frozen: {frozen} exceeds the depth of backbone "
                f"{backbone.name!r} ({len(layers)} layers)"
            )
        return frozen

    def set_layers(self, phase: Phase, backbone: Any) -> None:
        count = self.frozen_count(backbone)
        set_trainable(backbone.model, True)
        for i, layer in enumerate(backbone_layers(backbone.model)):
            layer.trainable = i >= count


@_register
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
        _positive_float(params, "decay")
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


@_register
class Autoencoder(Strategy):
    """Greedy layer-wise convolutional autoencoder pretraining, then the classifier.

    Stage i trains block i (blocks before it frozen) plus a decoder
    (Conv + UpSampling2D back to the input resolution, final 3-channel Conv)
    to reconstruct the preprocessed TRAIN images with MSE, for ``ae_epochs``.
    ``stages``: how many blocks (default: all). Then the decoder is dropped
    and backbone + head train as in ``fine_tune``, BatchNorm layers included.
    The backbone starts from random weights unless the spec's backbone entry
    names weights explicitly.
    """

    name = "autoencoder"
    default_weights = "none"
    defaults = {"stages": None, "ae_epochs": 5, "ae_learning_rate": None, "reconstructions": 4}

    @classmethod
    def check(cls, params: dict[str, Any]) -> None:
        _positive_int(params, "stages", allow_none=True)
        _positive_int(params, "ae_epochs")
        _positive_float(params, "ae_learning_rate", allow_none=True)
        _positive_int(params, "reconstructions")

    def stage_count(self, backbone: Any) -> int:
        """Number of autoencoder stages for ``backbone`` (checked against its blocks)."""
        if not backbone.blocks:
            raise SpecError(
                f"strategy {self.name!r}: backbone {backbone.name!r} declares no blocks"
            )
        stages = self.params["stages"] or len(backbone.blocks)
        if stages > len(backbone.blocks):
            raise SpecError(
                f"strategy.params.stages: {stages} exceeds the {len(backbone.blocks)} blocks "
                f"of backbone {backbone.name!r}"
            )
        return stages

    def configure_stage(self, stage: int, backbone: Any) -> None:
        """Stage ``stage`` (0-based): block ``stage`` trains, the blocks below are frozen."""
        names = block_names(backbone)
        _, last = _block_span(backbone, names[stage], "stages")
        start = 0 if stage == 0 else _block_span(backbone, names[stage - 1], "stages")[1] + 1
        set_trainable(backbone.model, True)
        for i, layer in enumerate(backbone_layers(backbone.model)):
            layer.trainable = start <= i <= last

    def stage_output_layer(self, stage: int, backbone: Any) -> str:
        """Name of the last layer of block ``stage`` (the encoder output of that stage)."""
        _, last = _block_span(backbone, block_names(backbone)[stage], "stages")
        return backbone_layers(backbone.model)[last].name
