"""The backbone record, the registry of builders, their argument checks and layer blocks.

Split out of :mod:`tlbench.models.backbones` (which re-exports every name here) so that the
custom CNNs (:mod:`tlbench.models.backbones.custom`) and the ``keras.applications`` builders
share them without importing each other.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import keras

from tlbench.core.registry import Registry

BACKBONES: Registry[Callable[..., Backbone]] = Registry("backbone")


@dataclass
class Backbone:
    """A built feature extractor and what the engine needs to know about it."""

    name: str
    model: keras.Model  # named "backbone": preprocessed images -> features, no top
    preprocess_mode: str  # for Preprocess(mode)
    pretrained: bool  # True when weights were loaded (imagenet / path / run); not random
    blocks: list[tuple[str, list[str]]]  # (block name, layer names in order)
    min_size: int  # smallest input side the architecture accepts
    #: What an integer depth (``unfreeze``, ``frozen``) counts: ``layer`` (the model's
    #: layers) or ``block`` (whole transformer blocks: every block but ``stem``).
    depth_unit: str = "layer"


def check_min_size(name: str, input_shape: tuple[int, int, int], min_size: int) -> None:
    if min(input_shape[:2]) < min_size:
        raise ValueError(
            f"backbone {name} does not accept input size {input_shape[0]}x{input_shape[1]}: "
            f"height and width must be at least {min_size} px"
        )


def check_kwargs(name: str, kwargs: dict, defaults: dict) -> dict:
    """Merge ``kwargs`` over ``defaults``; unknown keys -> error listing valid ones."""
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        raise ValueError(
            f"unknown kwargs {unknown} for backbone {name}; valid kwargs: "
            + (", ".join(sorted(defaults)) or "(none)")
        )
    return {**defaults, **kwargs}


def layer_blocks(model: keras.Model) -> list[tuple[str, list[str]]]:
    """Group the layers of ``model`` (in order, input layers left out) into named blocks.

    Names that follow a known scheme give the block: ``block_N`` (MobileNetV2),
    ``conv_dw_N``/``conv_pw_N`` -> ``block_N`` (MobileNet), ``blockN[a-z]``
    (EfficientNet, VGG, Xception, the custom CNNs), ``convN_blockM`` (ResNet,
    DenseNet), ``expanded_conv[_N]`` (MobileNetV2/V3), ``mixedN`` (Inception),
    ``blockNN_M`` (InceptionResNetV2), ``stage_N_block_M`` (ConvNeXt), NASNet cells.
    Unnamed layers before the first block form ``stem``, those after the last one
    ``top``, and those in between join the following block (Inception branches
    precede their ``mixed`` layer). A name that comes back after another block
    (NASNet cells interleave) merges everything since its first appearance, so
    blocks are contiguous and unique; blocks without weights are merged into the
    previous block (the first into the next). When no layer follows a known
    scheme, every layer with weights is a block of its own and weightless layers
    join the block before them.
    """
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if not layers:
        return []
    keys = [_block_key(layer.name) for layer in layers]
    if any(key is not None for key in keys):
        first = next(i for i, k in enumerate(keys) if k is not None)
        last = max(i for i, k in enumerate(keys) if k is not None)
        for i in range(len(keys)):
            if i < first:
                keys[i] = "stem"
            elif i > last:
                keys[i] = "top"
            elif keys[i] is None:
                keys[i] = next(k for k in keys[i + 1 :] if k is not None)
    else:
        keys = [layer.name if layer.weights else None for layer in layers]
        current = next((k for k in keys if k is not None), "layers")
        for i, key in enumerate(keys):
            current = key or current
            keys[i] = current
    return _merge_weightless(_group_contiguous(layers, keys))


# ---------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------

_BLOCK_PATTERNS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (re.compile(r"^(conv\d+_block\d+)_"), lambda m: m.group(1)),  # ResNet, DenseNet
    (re.compile(r"^(block\d+_\d+)(?:_|$)"), lambda m: m.group(1)),  # InceptionResNetV2
    (re.compile(r"^(block\d+[a-z]?)_"), lambda m: m.group(1)),  # EfficientNet, VGG, Xception
    (re.compile(r"^(block_\d+)_"), lambda m: m.group(1)),  # MobileNetV2
    (re.compile(r"^conv_(?:dw|pw|pad)_(\d+)(?:_|$)"), lambda m: f"block_{m.group(1)}"),  # MobileNet
    (re.compile(r"^(expanded_conv(?:_\d+)?)_"), lambda m: m.group(1)),  # MobileNetV2/V3
    (re.compile(r"^(mixed\d+)(?:_\d+)?$"), lambda m: m.group(1)),  # InceptionV3
    (re.compile(r"^(mixed_\d+[a-z])$"), lambda m: m.group(1)),  # InceptionResNetV2
    (re.compile(r"_(stage_\d+_block_\d+)_"), lambda m: m.group(1)),  # ConvNeXt
    (re.compile(r"_(downsampling_block_\d+)$"), lambda m: m.group(1)),  # ConvNeXt
    (  # NASNet cells: ..._<cell id> with ids like 0, stem_1, reduce_4
        re.compile(r"^(?:normal|reduction|adjust|separable)\w*?_((?:stem_|reduce_)?\d+)$"),
        lambda m: f"cell_{m.group(1)}",
    ),
]


def _block_key(layer_name: str) -> str | None:
    """The block a layer belongs to by its name, or None when no scheme matches."""
    for pattern, key in _BLOCK_PATTERNS:
        match = pattern.search(layer_name)
        if match:
            return key(match)
    return None


def _group_contiguous(layers: list, keys: list[str]) -> list[tuple[str, list[str], bool]]:
    """Group consecutive layers with the same key; a key seen earlier merges back.

    Returns (key, layer names, has weights) per block, keys unique and in order.
    """
    blocks: list[tuple[str, list[str], bool]] = []
    for layer, key in zip(layers, keys, strict=True):
        seen = [i for i, block in enumerate(blocks) if block[0] == key]
        if seen:
            start = seen[0]
            names = [n for block in blocks[start:] for n in block[1]] + [layer.name]
            has_weights = any(block[2] for block in blocks[start:]) or bool(layer.weights)
            blocks[start:] = [(key, names, has_weights)]
        else:
            blocks.append((key, [layer.name], bool(layer.weights)))
    return blocks


def _merge_weightless(
    blocks: list[tuple[str, list[str], bool]],
) -> list[tuple[str, list[str]]]:
    """Merge blocks without weights into the previous block (leading ones into the next)."""
    merged: list[tuple[str, list[str]]] = []
    pending: list[str] = []
    for key, names, has_weights in blocks:
        if has_weights:
            merged.append((key, pending + names))
            pending = []
        elif merged:
            merged[-1] = (merged[-1][0], merged[-1][1] + names)
        else:
            pending.extend(names)
    if pending:  # no block has weights at all
        merged.append((blocks[0][0], pending))
    return merged
