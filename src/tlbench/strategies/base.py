"""The strategy interface: which backbone layers train, at which learning rate, in which
phases, and how a strategy trains.

Each strategy is a small :class:`Strategy` subclass registered in
:data:`STRATEGIES` (``@register``), one module of :mod:`tlbench.strategies` each. It declares

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
  (:meth:`Strategy.multipliers`; variables not listed train at factor 1);
* :meth:`Strategy.train` — the run's training: the engine hands it a
  :class:`TrainContext` (the built model, the train and val splits, the
  trainer) and writes what it returns, a :class:`TrainResult`. The default fits
  the declared phases; ``direct`` and ``autoencoder`` override it in their units.

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
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tlbench.core.errors import SpecError
from tlbench.core.lazy import keras  # imported on first use: the parse-time check needs none
from tlbench.core.registry import Registry
from tlbench.models.batchnorm import is_batchnorm

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
    #: Whether the engine builds backbone and head (:func:`tlbench.models.assembly.build_model`)
    #: and hands them to :meth:`train` as ``ctx.built``; ``direct`` builds its own model.
    builds_model: ClassVar[bool] = True
    forces_weights: ClassVar[str | None] = None
    #: Backbone weights when the spec's backbone entry does not name any
    #: (None: the spec default, ``imagenet``).
    default_weights: ClassVar[str | None] = None
    #: Valid values of the ``batchnorm`` parameter, where ``defaults`` has one.
    batchnorm_values: ClassVar[tuple[str, ...]] = BATCHNORM_POLICIES
    defaults: ClassVar[dict[str, Any]] = {}
    #: Whether the strategy fits a probe on the frozen backbone's features without
    #: declaring a head-only phase (``linear_probe``; ``lp_ft`` before it fine-tunes): the
    #: workflow then gives its runs the (dataset, backbone) feature cache, as it does for
    #: a head-only phase.
    features_only: ClassVar[bool] = False
    #: Whether one of its phases trains the head alone on the frozen backbone
    #: (:attr:`Phase.head_only`): without augmentation such runs read the (dataset,
    #: backbone) feature cache (tests/test_study.py checks it against the phases).
    head_only_phase: ClassVar[bool] = False

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

    def check_backbone(self, backbone: Any) -> None:
        """Validate the strategy's parameters against ``backbone`` before any training
        (:func:`tlbench.models.assembly.build_model`; the phases' layer counts and block names
        are checked there through :meth:`configure`); raise :class:`SpecError`."""

    def train(self, ctx: TrainContext) -> TrainResult:
        """Train the run: the one entry point of a strategy (see :class:`TrainContext`).

        The default fits :meth:`phases` through ``ctx.trainer``
        (:meth:`tlbench.training.trainer.Trainer.fit_phases`).
        """
        return ctx.trainer.fit_phases(self, ctx)


@dataclass
class TrainContext:
    """What the engine hands :meth:`Strategy.train`.

    ``spec`` is the resolved run spec; ``built`` the untrained
    :class:`tlbench.models.assembly.BuiltModel` (None for a strategy whose ``builds_model``
    is False); ``splits`` holds the ``train`` and ``val`` splits only (images,
    labels): the test split is not in the context; ``trainer`` is the run's
    :class:`tlbench.training.trainer.Trainer` (``fit`` one phase, ``fit_phases``; history
    rows, checkpoints and resume go through it).
    """

    spec: Mapping[str, Any]
    built: Any
    splits: Mapping[str, tuple[Any, Any]]
    image_shape: tuple[int, int, int]
    classes: list[str]
    trainer: Any

    def result(self, model: keras.Model | None, **fields: Any) -> TrainResult:
        """A :class:`TrainResult` of ``model``; ``history`` and ``best_epoch`` default
        to the trainer's (its rows and best epoch so far)."""
        fields.setdefault("history", self.trainer.rows)
        fields.setdefault("best_epoch", self.trainer.best_epoch)
        return TrainResult(model, **fields)


@dataclass
class TrainResult:
    """What :meth:`Strategy.train` returns to the engine.

    ``model``: the trained classifier (raw 0..255 images at the prepared size ->
    class probabilities; what ``model.keras`` saves), None when training failed
    (``failure`` says why and where). ``history``: history.csv's rows;
    ``best_epoch``: the run's best epoch (None: none). ``pretrained``: whether it
    started from pretrained weights. ``extras``: keys added to metrics.json;
    ``arrays``: extra ``.npz`` files of the run folder (name -> arrays).
    ``head`` and ``head_features``: when the head alone was trained on these
    cached backbone features, the evaluation predicts train and val from them.
    """

    model: keras.Model | None
    failure: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    pretrained: bool = True
    extras: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, dict[str, Any]] = field(default_factory=dict)
    head: keras.Model | None = None
    head_features: Any = None


STRATEGIES: Registry[type[Strategy]] = Registry("strategy")


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: register a :class:`Strategy` subclass under its ``name``."""
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


def block_span(backbone: Any, block: str, key: str) -> tuple[int, int]:
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


def check_count_or_block(params: dict[str, Any], key: str, strategy: str) -> None:
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SpecError(
            f"strategy.params.{key}: {value!r} is neither a layer count nor a block name "
            f"(strategy {strategy!r})"
        )
    if isinstance(value, int) and value < 0:
        raise SpecError(f"strategy.params.{key}: {value} must be >= 0")


def positive_int(params: dict[str, Any], key: str, *, allow_none: bool = False) -> None:
    value = params[key]
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"strategy.params.{key}: {value!r} must be an integer >= 1")


def positive_float(params: dict[str, Any], key: str, *, allow_none: bool = False) -> None:
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
