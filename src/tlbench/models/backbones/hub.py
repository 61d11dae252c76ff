"""keras-hub image backbones by preset (registry name ``keras_hub``).

``kwargs.preset`` is a keras-hub preset name, handle or local folder
(:mod:`tlbench.models.backbones.hub_presets` checks it at parse time); the backbone is
``keras_hub.models.Backbone.from_preset(preset)`` (``load_weights`` only with
``weights: preset``), the vision encoder of a CLIP or SigLIP preset, and its input
scaling is the preset's image converter's ``scale`` and ``offset``
(``keras_hub.layers.ImageConverter.from_preset``), applied by a ``Rescaling`` layer
first in the backbone model (``preprocess_mode`` ``none``). Resizing is the run's own
(``training.input_size``, ``interpolation``), not the converter's.

Transformers (ViT, DeiT, DINOv2, CLIP and SigLIP image encoders) are rebuilt as a
functional model of the same layers (same weights) whose top-level layers are the
stem (scaling, patch and position embedding, and what comes before the first block),
one layer per transformer block, then the final normalisation and the pooling; the
``Backbone.blocks`` are ``stem``, ``block_1`` .. ``block_N``, the last block holding the
final normalisation and pooling too, and ``depth_unit`` is ``block``: an integer
``unfreeze`` counts whole transformer blocks from the top
(:func:`tlbench.strategies.base.depth_layers`). Pooled features: the class token
(``pooling: cls``, the default) or the mean of all tokens (``pooling: mean``;
ViT without a class token: mean); SigLIP pools with its own attention-pooling head.
ViT, DeiT, CLIP and SigLIP take only their preset's image size (their position
embeddings are learnt at it); DINOv2 takes any multiple of its patch size (its
position embeddings are interpolated).

CNNs (ResNet, EfficientNet, MobileNet, DenseNet, VGG, Xception) keep keras-hub's own
functional model, their scaling the :class:`tlbench.models.preprocess.Preprocess` mode
that does the same (an error when none does); their blocks are found by layer name as for ``keras.applications``
(:func:`tlbench.models.backbones.base.layer_blocks`) and their features are
average-pooled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from tlbench.core.errors import MissingWeightsError
from tlbench.models.backbones.base import BACKBONES, Backbone, layer_blocks
from tlbench.models.backbones.hub_presets import (
    CNN_FAMILIES,
    HUB_NAME,
    PRESET_WEIGHTS,
    check_hub_backbone,
    is_local,
)
from tlbench.models.layers import TokenPool
from tlbench.models.preprocess import PREPROCESS_MODES, Preprocess


@dataclass(frozen=True)
class Family:
    """How to take a keras-hub transformer apart: the layers before its blocks, the
    blocks, the layers after them (each called on one tensor), and its token pooling."""

    stem: Callable[[Any], list]
    blocks: Callable[[Any], list]
    top: Callable[[Any], list]
    fixed_size: bool  # position embeddings learnt at the preset's image size
    call_block: Callable[[Any, Any], Any] = lambda block, x: block(x)
    pooling: str | None = None  # fixed pooling (own head), else cls / mean


def _encoder_layers(layer_name: str) -> Callable[[Any], list]:
    return lambda hub: list(hub.get_layer(layer_name).encoder_layers)


def _functional(hub: Any) -> list:
    """The top-level layers of a functional encoder (CLIP, SigLIP), input left out."""
    return [layer for layer in hub.layers if not isinstance(layer, keras.layers.InputLayer)]


def _between(hub: Any, blocks: list, before: bool) -> list:
    layers, names = _functional(hub), {id(b) for b in blocks}
    first = next(i for i, layer in enumerate(layers) if id(layer) in names)
    last = max(i for i, layer in enumerate(layers) if id(layer) in names)
    return layers[:first] if before else layers[last + 1 :]


#: keras-hub class name -> its family (encoders named by their own class).
FAMILIES: dict[str, Family] = {
    "ViTBackbone": Family(
        stem=lambda hub: [
            hub.get_layer("vit_patching_and_embedding"),
            hub.get_layer("vit_encoder").dropout,
        ],
        blocks=_encoder_layers("vit_encoder"),
        top=lambda hub: [hub.get_layer("vit_encoder").layer_norm],
        fixed_size=True,
    ),
    "DeiTBackbone": Family(
        stem=lambda hub: [hub.get_layer("deit_patching_and_embedding")],
        blocks=_encoder_layers("deit_encoder"),
        top=lambda hub: [hub.get_layer("deit_encoder").layer_norm],
        fixed_size=True,
        # (hidden states, attention scores); without the scores the second is None,
        # which a functional graph does not take
        call_block=lambda block, x: block(x, return_attention_scores=True)[0],
    ),
    "DINOV2Backbone": Family(
        stem=lambda hub: [hub.embeddings],
        blocks=lambda hub: list(hub.encoder.layers),
        top=lambda hub: [hub.layernorm],
        fixed_size=False,
    ),
    "CLIPVisionEncoder": Family(
        stem=lambda hub: _between(hub, list(hub.encoder_layers), before=True),
        blocks=lambda hub: list(hub.encoder_layers),
        top=lambda hub: _between(hub, list(hub.encoder_layers), before=False),
        fixed_size=True,
    ),
    "SigLIPVisionEncoder": Family(
        stem=lambda hub: _between(hub, list(hub.encoder_layers), before=True),
        blocks=lambda hub: list(hub.encoder_layers),
        top=lambda hub: _between(hub, list(hub.encoder_layers), before=False),
        fixed_size=True,
        pooling="map",
    ),
}
#: Joint image-text presets: the image encoder is this attribute of the backbone.
VISION_ENCODER = {"CLIPBackbone": "vision_encoder", "SigLIPBackbone": "vision_encoder"}
#: keras-hub CNN backbone classes built as they are.
CNN_CLASSES = {
    "ResNetBackbone",
    "EfficientNetBackbone",
    "MobileNetBackbone",
    "DenseNetBackbone",
    "VGGBackbone",
    "XceptionBackbone",
}


def build_hub_backbone(
    name: str, weights: str, kwargs: dict, input_shape: tuple[int, int, int]
) -> Backbone:
    """The ``keras_hub`` builder (see the module docstring)."""
    check_hub_backbone(weights, kwargs, "backbone")
    preset = kwargs["preset"]
    hub, converter = _load(preset, weights == PRESET_WEIGHTS, input_shape)
    kind = type(hub).__name__
    if kind in VISION_ENCODER:
        hub = getattr(hub, VISION_ENCODER[kind])
        kind = type(hub).__name__
    scale = _converter_value(converter.scale, 1.0)
    offset = _converter_value(converter.offset, 0.0)
    pooling = kwargs.get("pooling")
    if kind in FAMILIES:
        family = FAMILIES[kind]
        _check_family(family, hub, preset, input_shape, pooling)
        model = PresetBackbone(hub, input_shape, scale, offset, pooling, name="backbone")
        blocks = model.blocks
        mode, depth_unit = "none", "block"  # the preset's scaling is the model's first layer
    elif kind in CNN_CLASSES:
        if pooling is not None:
            raise ValueError(
                f"backbone {HUB_NAME} preset {preset!r}: pooling applies to transformers; "
                f"{kind} feature maps are average-pooled"
            )
        model = PresetBackbone(hub, input_shape, name="backbone")
        mode = _preprocess_mode(preset, scale, offset)
        blocks, depth_unit = layer_blocks(model), "layer"
    else:
        raise ValueError(
            f"keras-hub preset {preset!r} is a {kind}, not an image backbone tlbench builds; "
            f"supported: {', '.join(sorted([*FAMILIES, *VISION_ENCODER, *CNN_CLASSES]))} "
            f"(families {', '.join(CNN_FAMILIES)} among the CNNs)"
        )
    return Backbone(
        name=HUB_NAME,
        model=model,
        preprocess_mode=mode,
        pretrained=weights == PRESET_WEIGHTS,
        blocks=blocks,
        min_size=1,
        depth_unit=depth_unit,
    )


def _load(preset: str, load_weights: bool, input_shape: tuple[int, int, int]) -> tuple[Any, Any]:
    """The preset's backbone and image converter; DINOv2 at ``input_shape``."""
    import keras_hub  # deferred: heavy, and only runs that build a preset need it

    try:
        kind = _preset_class(preset)
        overrides = {"image_shape": tuple(input_shape)} if kind == "DINOV2Backbone" else {}
        hub = keras_hub.models.Backbone.from_preset(preset, load_weights=load_weights, **overrides)
        converter = keras_hub.layers.ImageConverter.from_preset(preset)
    except (OSError, ValueError, ConnectionError) as error:
        where = "folder" if is_local(preset) else "preset"
        raise MissingWeightsError(
            f"cannot load keras-hub {where} {preset!r}: {error}. A published preset is "
            "downloaded to keras-hub's cache on first use; offline, fetch it first on a "
            "machine with network access (docs/offline.md)"
        ) from error
    return hub, converter


def _preset_class(preset: str) -> str:
    """The backbone class a preset declares (what ``Backbone.from_preset`` reads first)."""
    # deferred with keras_hub; the loader from_preset itself uses
    from keras_hub.src.utils.preset_utils import get_preset_loader

    return get_preset_loader(preset).check_backbone_class().__name__


def _converter_value(value: Any, default: float) -> Any:
    if value is None:
        return default
    return _plain(value) if isinstance(value, list | tuple) else float(value)


def _preprocess_mode(preset: str, scale: Any, offset: Any) -> str:
    """The :class:`Preprocess` mode that does the converter's ``x * scale + offset``."""
    probe = np.random.default_rng(0).uniform(0, 255, size=(1, 2, 2, 3)).astype("float32")
    expected = probe * np.asarray(scale, "float32") + np.asarray(offset, "float32")
    for mode in PREPROCESS_MODES:
        got = keras.ops.convert_to_numpy(Preprocess(mode)(probe))
        if np.allclose(got, expected, atol=1e-3):
            return mode
    raise ValueError(
        f"keras-hub preset {preset!r}: its image converter's scaling (scale {scale}, offset "
        f"{offset}) is none of tlbench's preprocessing modes {', '.join(PREPROCESS_MODES)}"
    )


def _plain(value: Any) -> Any:
    """A per-channel list (which Keras tracks as an attribute) as a plain list."""
    return [float(v) for v in value] if isinstance(value, list | tuple) else value


def _check_family(
    family: Family, hub: Any, preset: str, input_shape: tuple[int, int, int], pooling: Any
) -> None:
    """The input size and pooling a transformer preset takes (errors name the preset)."""
    hub_shape = tuple(int(d) for d in hub.input_shape[1:])
    if family.fixed_size and hub_shape != tuple(input_shape):
        raise ValueError(
            f"keras-hub preset {preset!r} ({type(hub).__name__}) takes {hub_shape[0]}x"
            f"{hub_shape[1]} images (its position embeddings are learnt at that size), "
            f"got input size {input_shape[0]}x{input_shape[1]}; set training.input_size "
            f"(or the backbone's input_size) to {hub_shape[0]}"
        )
    if family.pooling is not None and pooling is not None:
        raise ValueError(
            f"keras-hub preset {preset!r}: {type(hub).__name__} pools with its own head; "
            "pooling cannot be set"
        )


@keras.saving.register_keras_serializable(package="tlbench")
class PresetBackbone(keras.Model):
    """A keras-hub backbone as the run's ``backbone`` model (see the module docstring).

    A transformer (:data:`FAMILIES`) is rebuilt from its own layers: the preset's scaling,
    the stem, one layer per block, the final layers and the pooling (:attr:`blocks` names
    them); another backbone keeps its own functional graph. Saved as the keras-hub
    backbone's config and rebuilt the same way on load, so ``model.keras`` does not hold
    keras-hub's inner layers' configs (some of which their classes cannot read back)."""

    def __init__(
        self,
        hub: Any,
        image_shape: Any,
        scale: Any = None,
        offset: Any = None,
        pooling: str | None = None,
        **kwargs: Any,
    ):
        image_shape = tuple(int(d) for d in image_shape)
        family = FAMILIES.get(type(hub).__name__)
        blocks: list[tuple[str, list[str]]] = []
        if family is None:
            inputs, outputs = hub.inputs, hub.outputs
        else:
            if pooling is None and family.pooling is None:
                pooling = "cls" if getattr(hub, "use_class_token", True) else "mean"
            inputs = keras.Input(shape=image_shape, name="images")
            rescale = keras.layers.Rescaling(
                1.0 if scale is None else scale,
                0.0 if offset is None else offset,
                name="preset_scaling",
            )
            x = rescale(inputs)
            stem = family.stem(hub)
            for layer in stem:
                x = layer(x)
            layers = family.blocks(hub)
            for block in layers:
                x = family.call_block(block, x)
            tail = family.top(hub)
            for layer in tail:
                x = layer(x)
            if family.pooling is None:
                pool = TokenPool(pooling, name=f"pool_{pooling}")
                x = pool(x)
                tail = [*tail, pool]
            outputs = x
            blocks = [
                ("stem", [rescale.name, *(layer.name for layer in stem)]),
                *((f"block_{i}", [block.name]) for i, block in enumerate(layers, start=1)),
            ]
            blocks[-1] = (blocks[-1][0], blocks[-1][1] + [layer.name for layer in tail])
        super().__init__(inputs, outputs, **kwargs)
        self.blocks = blocks
        self.hub_config = keras.saving.serialize_keras_object(hub)
        self.image_shape = list(image_shape)
        self.scale, self.offset, self.pooling = scale, offset, pooling

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "hub": self.hub_config,
            "image_shape": list(self.image_shape),
            "scale": _plain(self.scale),
            "offset": _plain(self.offset),
            "pooling": self.pooling,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> PresetBackbone:
        import keras_hub  # noqa: F401  (deferred: registers the classes the config names)

        config = dict(config)
        hub = keras.saving.deserialize_keras_object(config.pop("hub"))
        return cls(hub, **config)


BACKBONES.add(HUB_NAME, build_hub_backbone)
