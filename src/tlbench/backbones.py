"""Backbones: feature extractors by name, with their weights, preprocessing and blocks.

``BACKBONES`` holds one builder per name, ``build(name, weights, kwargs,
input_shape) -> Backbone``:

* every model of ``keras.applications`` under its Keras name (discovered from
  the installed Keras, not from a hand list), built with ``include_top=False``;
  ``kwargs`` are passed through (e.g. ``alpha``);
* custom CNNs: ``seed003_cnn`` (seeds 003/004), ``seed000_cnn`` (seed 000's
  ``CNN_10_relu``), ``alexnet`` (architecture only) and ``small_cnn``.

A backbone ``model`` is named ``"backbone"`` and maps *preprocessed* images to
features (a 4D map, or a 2D vector for ``seed000_cnn`` and ``pooling=...``);
``Backbone.preprocess_mode`` says which :class:`tlbench.preprocess.Preprocess`
mode must come first.

Weights (``cfg["weights"]``): ``"imagenet"`` loads the real ImageNet weights
through Keras's own call and cache folder (``$KERAS_HOME/models``, default
``~/.keras/models``, read when the backbone is built); when the file is neither
cached nor downloadable, :class:`MissingWeightsError` names the file and folder;
there is never a fallback to random weights. ``"none"`` is random
initialisation, a path loads a weights file, and ``{"run": folder}`` takes the
nested ``"backbone"`` layer of that earlier run's ``model.keras``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tlbench.errors import MissingWeightsError  # re-exported: callers import it from here
from tlbench.preprocess import (
    IMAGENET_MEAN_BGR_255,
    IMAGENET_MEAN_RGB,
    IMAGENET_STD_RGB,
    Equalize,
    Preprocess,
    Standardize,
    check_mode,
)
from tlbench.registry import Registry

BACKBONES: Registry[Callable[..., Backbone]] = Registry("backbone")

#: Keys of a backbone config.
CONFIG_KEYS = ("name", "weights", "kwargs")
WEIGHTS_HELP = "imagenet, none, a path to a weights file (.h5/.weights.h5), or {run: <run folder>}"

# keras.applications arguments that tlbench sets itself (not allowed in kwargs).
_RESERVED_KWARGS = {
    "include_top",
    "weights",
    "input_tensor",
    "input_shape",
    "classes",
    "classifier_activation",
    "name",
}
# Smallest input side per keras.applications model (Keras's own ``min_size``); others 32.
_MIN_SIZE = {"Xception": 71, "InceptionV3": 75, "InceptionResNetV2": 75}
# Models whose ImageNet weights need exactly this input side (Keras rejects others).
_IMAGENET_EXACT_SIZE = {"NASNetMobile": 224, "NASNetLarge": 331}
# Families whose models rescale inside (mode "none") unless include_preprocessing=False;
# then the images need what that internal layer did (keras.applications sources).
_INTERNAL_PREPROCESS = {"ConvNeXt": "torch", "EfficientNetV2": "tf", "MobileNetV3": "tf"}
# Valid alphas of the MobileNet ImageNet weight files (as in keras.applications).
_MOBILENET_ALPHAS = {
    "MobileNet": (0.25, 0.5, 0.75, 1.0),
    "MobileNetV2": (0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
}


@dataclass
class Backbone:
    """A built feature extractor and what the engine needs to know about it."""

    name: str
    model: keras.Model  # named "backbone": preprocessed images -> features, no top
    preprocess_mode: str  # for Preprocess(mode)
    pretrained: bool  # True when weights were loaded (imagenet / path / run)
    blocks: list[tuple[str, list[str]]]  # (block name, layer names in order)
    min_size: int  # smallest input side the architecture accepts


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def build_backbone(cfg: dict, input_shape: tuple[int, int, int]) -> Backbone:
    """Build the backbone described by ``cfg`` for images of ``input_shape`` (H, W, C).

    ``cfg = {"name": "MobileNetV2", "weights": "imagenet" | "none" | "<path>" |
    {"run": "<run folder>"}, "kwargs": {"alpha": 0.35}}``. An input side below the
    built backbone's ``min_size`` is an error (also for a registered builder that does
    not check it itself).
    """
    name, weights, kwargs = _parse_config(cfg)
    input_shape = _check_input_shape(input_shape)
    builder = BACKBONES.get(name)
    if isinstance(weights, dict):
        backbone = builder(name, "none", kwargs, input_shape)
        _check_min_size(name, input_shape, getattr(backbone, "min_size", None) or 1)
        source = _load_run_backbone(Path(weights["run"]))
        _copy_weights(source, backbone.model, what=f"{name} from run {weights['run']}")
        backbone.pretrained = True
        return backbone
    backbone = builder(name, weights, kwargs, input_shape)
    _check_min_size(name, input_shape, getattr(backbone, "min_size", None) or 1)
    return backbone


def build_source_classifier(
    cfg: dict, input_shape: tuple[int, int, int]
) -> tuple[keras.Model, list[str]]:
    """A whole source-task classifier for the ``direct`` strategy, and its class names.

    The model takes RAW float images (0..255) of ``input_shape`` and returns
    source-class probabilities. ``weights: imagenet`` gives
    ``Preprocess + keras.applications.X(include_top=True)`` (images are resized
    to the model's default ImageNet size first when they differ) with the 1000
    ImageNet class names; ``{"run": folder}`` gives that run's ``model.keras`` and
    its classes. Other weights are an error: ``direct`` needs a trained source model.
    """
    name, weights, kwargs = _parse_config(cfg)
    input_shape = _check_input_shape(input_shape)
    if isinstance(weights, dict):
        return _load_run_classifier(Path(weights["run"]), input_shape)
    if weights != "imagenet":
        raise ValueError(
            f"the direct strategy needs a trained source model, but backbone {name!r} has "
            f"weights {weights!r}; valid weights for it: imagenet, or {{run: <run folder>}}"
        )
    fn = keras_applications().get(name)
    if fn is None:
        raise ValueError(
            f"backbone {name!r} has no ImageNet classifier; valid names with weights imagenet: "
            + ", ".join(sorted(keras_applications()))
        )
    _check_app_kwargs(name, fn, kwargs)
    with _keras_weights_cache(name):
        try:
            classifier = fn(include_top=True, weights="imagenet", **kwargs)
        except (ValueError, TypeError) as err:
            raise ValueError(f"cannot build the ImageNet classifier {name}: {err}") from err
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    size = tuple(classifier.input_shape[1:3])
    if size != tuple(input_shape[:2]):
        x = keras.layers.Resizing(*size, name="resize_to_source")(x)
    x = Preprocess(family_preprocess_mode(name), name="preprocess")(x)
    outputs = classifier(x)
    model = keras.Model(inputs, outputs, name="source_classifier")
    return model, imagenet_classes()


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


def keras_applications() -> dict[str, Callable[..., keras.Model]]:
    """All model constructors of the installed ``keras.applications``, by Keras name."""
    found = {}
    for attr in dir(keras.applications):
        obj = getattr(keras.applications, attr)
        if attr[:1].isupper() and callable(obj) and not inspect.isclass(obj):
            found[attr] = obj
    return found


def family_preprocess_mode(name: str) -> str:
    """The Preprocess mode of a ``keras.applications`` model, read off its family's
    ``preprocess_input`` (applied to a probe image and compared with each mode)."""
    fn = keras_applications()[name]
    module = importlib.import_module(fn.__module__)
    probe = np.random.default_rng(0).uniform(0, 255, size=(1, 2, 2, 3)).astype("float32")
    got = np.asarray(module.preprocess_input(probe.copy()))
    for mode, expected in _reference_modes(probe).items():
        if got.shape == expected.shape and np.allclose(got, expected, atol=1e-3):
            return mode
    raise ValueError(f"cannot tell the preprocessing of {name} ({fn.__module__}.preprocess_input)")


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names (index = Keras's class index), from the Keras cache."""
    from keras.src.applications import imagenet_utils

    path = cached_keras_file(
        "imagenet_class_index.json",
        imagenet_utils.CLASS_INDEX_PATH,
        file_hash="c2c37ea517e94d9795004a39431a14cb",
    )
    index = json.loads(Path(path).read_text())
    return [index[str(i)][1] for i in range(len(index))]


def keras_cache_dir() -> Path:
    """Keras's cache folder as of now: ``$KERAS_HOME`` or ``~/.keras``."""
    return Path(os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")).expanduser()


def cached_keras_file(fname: str, origin: str, *, file_hash: str | None = None) -> Path:
    """Path of ``fname`` in ``$KERAS_HOME/models``, downloading it from ``origin`` if absent.

    Raises :class:`MissingWeightsError` naming the file and folder when it is absent
    and cannot be downloaded, or when a cached copy fails the published hash.
    """
    folder = keras_cache_dir() / "models"
    target = folder / fname
    if target.is_file():
        if file_hash is not None:
            from keras.src.utils import file_utils

            if not file_utils.validate_file(str(target), file_hash):
                raise MissingWeightsError(
                    f"{target} does not match its published hash {file_hash}; "
                    "replace it with the original file"
                )
        return target
    try:
        return Path(_download_weights(fname, origin, file_hash))
    except Exception as err:
        raise MissingWeightsError(
            f"pretrained weights not found: Keras expects the file {fname!r} in {folder} "
            f"($KERAS_HOME/models; KERAS_HOME={os.environ.get('KERAS_HOME', '<unset>')}), "
            f"and downloading it from {origin} failed ({err}). Put the file there; tlbench "
            "never falls back to random weights."
        ) from err


# ---------------------------------------------------------------------------
# Config parsing and checks
# ---------------------------------------------------------------------------


def _parse_config(cfg: dict) -> tuple[str, str | dict, dict]:
    """Validate a backbone config; return (name, normalised weights, kwargs)."""
    if not isinstance(cfg, dict):
        raise TypeError(f"backbone config must be a mapping with keys {CONFIG_KEYS}, got {cfg!r}")
    unknown = sorted(set(cfg) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(
            f"unknown backbone config key(s) {unknown}; valid keys: {', '.join(CONFIG_KEYS)}"
        )
    if "name" not in cfg:
        raise ValueError("backbone config needs 'name'; valid names: " + ", ".join(BACKBONES))
    name = cfg["name"]
    BACKBONES.get(name)  # unknown name -> error listing valid names
    if "weights" not in cfg:
        raise ValueError(f"backbone config for {name!r} needs 'weights': {WEIGHTS_HELP}")
    kwargs = dict(cfg.get("kwargs") or {})
    return name, _normalise_weights(cfg["weights"]), kwargs


def _normalise_weights(weights: Any) -> str | dict:
    """``None``/"none" -> "none"; "imagenet"; an existing path (str); {"run": str}."""
    if weights is None or weights == "none":
        return "none"
    if weights == "imagenet":
        return "imagenet"
    if isinstance(weights, dict):
        if set(weights) != {"run"}:
            raise ValueError(f"invalid backbone weights {weights!r}; valid: {WEIGHTS_HELP}")
        return {"run": str(weights["run"])}
    if isinstance(weights, str | os.PathLike):
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(
                f"backbone weights file {str(path)!r} does not exist; valid weights: {WEIGHTS_HELP}"
            )
        return str(path)
    raise ValueError(f"invalid backbone weights {weights!r}; valid: {WEIGHTS_HELP}")


def _check_input_shape(input_shape: Any) -> tuple[int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(d, int | np.integer) and d > 0 for d in shape):
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}")
    return tuple(int(d) for d in shape)


def _check_min_size(name: str, input_shape: tuple[int, int, int], min_size: int) -> None:
    if min(input_shape[:2]) < min_size:
        raise ValueError(
            f"backbone {name} does not accept input size {input_shape[0]}x{input_shape[1]}: "
            f"height and width must be at least {min_size} px"
        )


def _check_kwargs(name: str, kwargs: dict, defaults: dict) -> dict:
    """Merge ``kwargs`` over ``defaults``; unknown keys -> error listing valid ones."""
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        raise ValueError(
            f"unknown kwargs {unknown} for backbone {name}; valid kwargs: "
            + (", ".join(sorted(defaults)) or "(none)")
        )
    return {**defaults, **kwargs}


def _check_app_kwargs(name: str, fn: Callable, kwargs: dict) -> None:
    valid = sorted(set(inspect.signature(fn).parameters) - _RESERVED_KWARGS)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown kwargs {unknown} for backbone {name}; valid kwargs: {', '.join(valid)}"
        )


# ---------------------------------------------------------------------------
# keras.applications backbones
# ---------------------------------------------------------------------------


def _build_keras_application(
    name: str, weights: str, kwargs: dict, input_shape: tuple[int, int, int]
) -> Backbone:
    """Build ``keras.applications.<name>(include_top=False)`` with the given weights."""
    fn = keras_applications()[name]
    _check_app_kwargs(name, fn, kwargs)
    min_size = _MIN_SIZE.get(name, 32)
    _check_min_size(name, input_shape, min_size)
    call_weights: str | None = None if weights == "none" else weights
    if weights == "imagenet":
        if input_shape[2] != 3:
            raise ValueError(
                f"ImageNet weights of {name} need 3 input channels, got input shape {input_shape}"
            )
        exact = _IMAGENET_EXACT_SIZE.get(name)
        if exact is not None and input_shape[:2] != (exact, exact):
            raise ValueError(
                f"{name} with ImageNet weights needs input size exactly {exact}x{exact}, "
                f"got {input_shape[0]}x{input_shape[1]}; allowed sizes: {exact}x{exact} "
                "(or use weights none)"
            )
        if name in _MOBILENET_ALPHAS and input_shape[:2] != (224, 224):
            call_weights = str(_mobilenet_224_no_top(name, kwargs))
    with _keras_weights_cache(name):
        try:
            model = fn(include_top=False, weights=call_weights, input_shape=input_shape, **kwargs)
        except (ValueError, TypeError) as err:
            if isinstance(err, MissingWeightsError):
                raise
            raise ValueError(
                f"cannot build backbone {name} with kwargs {kwargs} at input shape "
                f"{input_shape} (weights {weights}): {err}"
            ) from err
    model = _named_backbone(model)
    return Backbone(
        name=name,
        model=model,
        preprocess_mode=_app_preprocess_mode(name, kwargs),
        pretrained=weights != "none",
        blocks=layer_blocks(model),
        min_size=min_size,
    )


def _app_preprocess_mode(name: str, kwargs: dict) -> str:
    """The family's mode; models built with ``include_preprocessing=False`` need the
    normalisation their internal layer would have done."""
    if kwargs.get("include_preprocessing", True) is False:
        for prefix, mode in _INTERNAL_PREPROCESS.items():
            if name.startswith(prefix):
                return mode
    return family_preprocess_mode(name)


def _mobilenet_224_no_top(name: str, kwargs: dict) -> Path:
    """The cached 224 no-top ImageNet file of MobileNet/MobileNetV2 (size independent).

    File names follow ``keras.applications.mobilenet`` / ``mobilenet_v2``.
    """
    alpha = float(kwargs.get("alpha", 1.0))
    if alpha not in _MOBILENET_ALPHAS[name]:
        raise ValueError(
            f"{name} has ImageNet weights only for alpha in {_MOBILENET_ALPHAS[name]}, got {alpha}"
        )
    if name == "MobileNet":
        from keras.src.applications import mobilenet as module

        if kwargs.get("depth_multiplier", 1) != 1:
            raise ValueError("MobileNet ImageNet weights need depth_multiplier 1")
        alpha_text = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}[alpha]
        fname = f"mobilenet_{alpha_text}_224_tf_no_top.h5"
    else:
        from keras.src.applications import mobilenet_v2 as module

        fname = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_224_no_top.h5"
    return cached_keras_file(fname, module.BASE_WEIGHT_PATH + fname)


def _download_weights(fname: str, origin: str, file_hash: str | None) -> str:
    """Download into the Keras cache with Keras's own ``get_file`` (replaced in tests)."""
    return _KERAS_GET_FILE(
        fname,
        origin,
        cache_subdir="models",
        cache_dir=str(keras_cache_dir()),
        file_hash=file_hash,
    )


def _keras_get_file() -> Callable[..., str]:
    from keras.src.utils import file_utils

    return file_utils.get_file


_KERAS_GET_FILE = _keras_get_file()


@contextlib.contextmanager
def _keras_weights_cache(name: str) -> Iterator[None]:
    """While building ``name``, serve Keras's weight look-ups from :func:`cached_keras_file`.

    ``keras.applications`` calls ``file_utils.get_file(fname, origin,
    cache_subdir="models", ...)``; Keras reads ``KERAS_HOME`` only once at import
    and silently swaps a read-only cache for ``/tmp/.keras``, so tlbench resolves
    the file itself (current ``KERAS_HOME``) and raises a clear
    :class:`MissingWeightsError` when it is absent and cannot be downloaded.
    """
    from keras.src.utils import file_utils

    original = file_utils.get_file

    def get_file(fname=None, origin=None, *args, **kwargs):
        if args or kwargs.get("cache_subdir") != "models" or not fname or not origin:
            return original(fname, origin, *args, **kwargs)
        return str(cached_keras_file(fname, origin, file_hash=kwargs.get("file_hash")))

    file_utils.get_file = get_file
    try:
        yield
    finally:
        file_utils.get_file = original


def _named_backbone(model: keras.Model) -> keras.Model:
    """Return ``model`` as a functional model named ``"backbone"`` (same layers)."""
    if model.name == "backbone":
        return model
    return keras.Model(model.inputs, model.outputs, name="backbone")


def _reference_modes(x: np.ndarray) -> dict[str, np.ndarray]:
    """Each Preprocess mode computed in numpy on ``x`` (channels last, 0..255)."""
    return {
        "tf": x / 127.5 - 1.0,
        "torch": (x / 255.0 - np.array(IMAGENET_MEAN_RGB)) / np.array(IMAGENET_STD_RGB),
        "caffe": x[..., ::-1] - np.array(IMAGENET_MEAN_BGR_255),
        "unit": x / 255.0,
        "none": x,
    }


for _name in keras_applications():
    BACKBONES.add(_name, _build_keras_application)


# ---------------------------------------------------------------------------
# Custom backbones
# ---------------------------------------------------------------------------


#: Moving-average momentum of the custom CNNs' BatchNormalization (see _conv_bn_relu).
BN_MOMENTUM = 0.9


def _conv_bn_relu(x, filters: int, kernel: int, block: str, index: int, strides: int = 1):
    """Conv2D (same padding) - BatchNormalization - ReLU, named ``{block}_conv{index}`` etc.

    BatchNorm momentum is 0.9 (Keras default 0.99): small studies take few steps
    (10 images per class, a few batches an epoch), and after ~100 steps at 0.99 the
    moving statistics are still half their initial values, so inference-mode
    accuracy collapses while training-mode accuracy looks fine — seed 000's
    train/test signature. At 0.9 they track the data within a few dozen steps.
    """
    x = keras.layers.Conv2D(
        filters, kernel, strides=strides, padding="same", name=f"{block}_conv{index}"
    )(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{block}_bn{index}")(x)
    return keras.layers.ReLU(name=f"{block}_relu{index}")(x)


def _finish_custom(
    name: str,
    inputs,
    outputs,
    weights: str,
    min_size: int,
    preprocess_mode: str,
) -> Backbone:
    """Wrap a custom functional backbone; load a weights file; reject imagenet."""
    model = keras.Model(inputs, outputs, name="backbone")
    if weights == "imagenet":
        raise ValueError(
            f"backbone {name} has no ImageNet weights; valid weights for it: none, "
            "a path to a weights file, or {run: <run folder>}"
        )
    if weights != "none":
        model.load_weights(weights)
    return Backbone(
        name=name,
        model=model,
        preprocess_mode=check_mode(preprocess_mode),
        pretrained=weights != "none",
        blocks=layer_blocks(model),
        min_size=min_size,
    )


@BACKBONES.register("seed003_cnn")
def seed003_cnn(name: str, weights: str, kwargs: dict, input_shape: tuple[int, int, int]):
    """The CNN of seeds 003/004 (Oxford-IIIT Pet), without its head.

    ``block1``: Conv 7x7/2, 64 - BN - ReLU - MaxPool 2; ``block2``: [Conv 3x3, 128 -
    BN - ReLU] x 2 - MaxPool 2; ``block3``: [Conv 3x3, 256 - BN - ReLU] x 2 - MaxPool 2.
    At 224x224 the output is 14x14x256 and the conv parameter counts are 9472,
    73856, 147584, 295168, 590080, as in the seeds' layer tables (global average
    pooling + Dense is the head's job). kwargs: ``first_stride`` (2; seed 004's
    autoencoder tables show 224x224 after the first conv, i.e. stride 1).
    """
    opts = _check_kwargs(name, kwargs, {"first_stride": 2})
    stride = int(opts["first_stride"])
    min_size = 8 * stride
    _check_min_size(name, input_shape, min_size)
    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv_bn_relu(inputs, 64, 7, "block1", 1, strides=stride)
    x = keras.layers.MaxPooling2D(2, name="block1_pool")(x)
    for block, filters in (("block2", 128), ("block3", 256)):
        x = _conv_bn_relu(x, filters, 3, block, 1)
        x = _conv_bn_relu(x, filters, 3, block, 2)
        x = keras.layers.MaxPooling2D(2, name=f"{block}_pool")(x)
    return _finish_custom(name, inputs, x, weights, min_size, "unit")


@BACKBONES.register("seed000_cnn")
def seed000_cnn(name: str, weights: str, kwargs: dict, input_shape: tuple[int, int, int]):
    """Seed 000's own GTSRB CNN, ``CNN_10_relu`` (0.948 test accuracy there), without its top.

    Seed 000's report names the model but gives no layer table; the layers are
    those of ``CNN_10_relu`` in the configuration list of the same lab series:
    Conv 3x3 6 - Conv 3x3 12 - Conv 3x3 24 - MaxPool 2 - Conv 3x3 48 - MaxPool 2 -
    Flatten - Dense 1024, all ReLU, ``same`` padding, no BN. Blocks: ``block1``..
    ``block4`` (one per conv) and ``block5`` (Flatten + Dense). The output is the
    1024-vector; ``dense_units: 0`` stops at the 4D map instead.
    """
    opts = _check_kwargs(name, kwargs, {"dense_units": 1024})
    _check_min_size(name, input_shape, 4)
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for i, filters in enumerate((6, 12, 24, 48), start=1):
        x = keras.layers.Conv2D(
            filters, 3, padding="same", activation="relu", name=f"block{i}_conv"
        )(x)
        if i >= 3:
            x = keras.layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
    if int(opts["dense_units"]) > 0:
        x = keras.layers.Flatten(name="block5_flatten")(x)
        x = keras.layers.Dense(int(opts["dense_units"]), activation="relu", name="block5_dense")(x)
    return _finish_custom(name, inputs, x, weights, 4, "unit")


@BACKBONES.register("alexnet")
def alexnet(name: str, weights: str, kwargs: dict, input_shape: tuple[int, int, int]):
    """AlexNet's convolutional part (torchvision layout, seed 002), architecture only.

    ``block1``: pad 2, Conv 11x11/4, 64 - ReLU - MaxPool 3/2; ``block2``: pad 2,
    Conv 5x5 192 - ReLU - MaxPool 3/2; ``block3``..``block5``: Conv 3x3 384, 256,
    256 - ReLU, MaxPool 3/2 after ``block5``. 2,469,696 parameters; 6x6x256 = 9216
    features at 224x224 as in seed 002. No Keras weights exist (torch preprocessing).
    """
    _check_kwargs(name, kwargs, {})
    min_size = 63
    _check_min_size(name, input_shape, min_size)
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.ZeroPadding2D(2, name="block1_pad")(inputs)
    x = keras.layers.Conv2D(64, 11, strides=4, activation="relu", name="block1_conv")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="block1_pool")(x)
    x = keras.layers.ZeroPadding2D(2, name="block2_pad")(x)
    x = keras.layers.Conv2D(192, 5, activation="relu", name="block2_conv")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="block2_pool")(x)
    for i, filters in ((3, 384), (4, 256), (5, 256)):
        x = keras.layers.Conv2D(
            filters, 3, padding="same", activation="relu", name=f"block{i}_conv"
        )(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="block5_pool")(x)
    return _finish_custom(name, inputs, x, weights, min_size, "torch")


@BACKBONES.register("small_cnn")
def small_cnn(name: str, weights: str, kwargs: dict, input_shape: tuple[int, int, int]):
    """A compact CNN for small images (e.g. 32x32 GTSRB) trained from scratch.

    One block per entry of ``widths`` (default ``[32, 64, 128]``): [Conv 3x3 -
    BN - ReLU] x ``convs_per_block`` (default 2) - MaxPool 2, then Dropout
    ``dropout`` (default 0: none). ``standardize: true`` puts a per-image
    :class:`~tlbench.preprocess.Standardize` layer (``block0_standardize``) first;
    ``equalize: true`` a per-image luma histogram equalisation,
    :class:`~tlbench.preprocess.Equalize` (``block0_equalize``), before it.
    Output: a 4D map of side ``input / 2**len(widths)``, or with ``dense_units: n``
    a last block of Flatten - Dense n - ReLU, which keeps where in the image a
    feature is (global average pooling of the map does not).
    """
    opts = _check_kwargs(
        name,
        kwargs,
        {
            "widths": [32, 64, 128],
            "convs_per_block": 2,
            "dropout": 0.0,
            "standardize": False,
            "equalize": False,
            "dense_units": 0,
        },
    )
    widths = [int(w) for w in opts["widths"]]
    convs = int(opts["convs_per_block"])
    dropout = float(opts["dropout"])
    dense = int(opts["dense_units"])
    if not widths or min(widths) < 1 or convs < 1 or not 0.0 <= dropout < 1.0 or dense < 0:
        raise ValueError(
            "small_cnn needs non-empty positive widths, convs_per_block >= 1, "
            f"0 <= dropout < 1 and dense_units >= 0, got {opts}"
        )
    for flag in ("standardize", "equalize"):
        if not isinstance(opts[flag], bool):
            raise ValueError(f"small_cnn {flag} must be true or false, got {opts[flag]!r}")
    min_size = 2 ** len(widths)
    _check_min_size(name, input_shape, min_size)
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if opts["equalize"]:
        x = Equalize(name="block0_equalize")(x)  # the input is 0..1 (Preprocess "unit")
    if opts["standardize"]:
        x = Standardize(name="block0_standardize")(x)
    for b, width in enumerate(widths, start=1):
        for c in range(1, convs + 1):
            x = _conv_bn_relu(x, width, 3, f"block{b}", c)
        x = keras.layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"block{b}_dropout")(x)
    if dense:
        top = f"block{len(widths) + 1}"
        x = keras.layers.Flatten(name=f"{top}_flatten")(x)
        x = keras.layers.Dense(dense, activation="relu", name=f"{top}_dense")(x)
    return _finish_custom(name, inputs, x, weights, min_size, "unit")


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


# ---------------------------------------------------------------------------
# Earlier runs as weight sources
# ---------------------------------------------------------------------------


def _load_run_model(run_dir: Path) -> keras.Model:
    """Load ``run_dir/model.keras`` (custom tlbench layers registered first)."""
    path = run_dir / "model.keras"
    if not path.is_file():
        raise FileNotFoundError(
            f"weights {{run: {str(run_dir)!r}}}: {path} does not exist (not a finished run?)"
        )
    # register tlbench's custom layers (augmentation; the strategies' class selector)
    for module in ("tlbench.augment", "tlbench.layers"):
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)
    return keras.saving.load_model(path, compile=False)


def _load_run_backbone(run_dir: Path) -> keras.Model:
    """The nested ``"backbone"`` layer of an earlier run's ``model.keras``."""
    model = _load_run_model(run_dir)
    try:
        return model.get_layer("backbone")
    except ValueError:
        names = ", ".join(layer.name for layer in model.layers)
        raise ValueError(
            f"{run_dir / 'model.keras'} has no nested layer named 'backbone'; its layers: {names}"
        ) from None


def _copy_weights(source: keras.Model, target: keras.Model, what: str) -> None:
    """Copy all weights of ``source`` into ``target``; shapes must match one by one."""
    src, dst = source.weights, target.weights
    if len(src) != len(dst):
        raise ValueError(
            f"cannot load {what}: the saved backbone has {len(src)} weight tensors, "
            f"the configured one {len(dst)} (different architecture or kwargs?)"
        )
    for s, d in zip(src, dst, strict=True):
        if tuple(s.shape) != tuple(d.shape):
            raise ValueError(
                f"cannot load {what}: weight {s.path} has shape {tuple(s.shape)} but the "
                f"configured backbone's {d.path} has {tuple(d.shape)} (different input size "
                "or kwargs?)"
            )
    for s, d in zip(src, dst, strict=True):
        d.assign(keras.ops.convert_to_numpy(s))


def _load_run_classifier(
    run_dir: Path, input_shape: tuple[int, int, int]
) -> tuple[keras.Model, list[str]]:
    """An earlier run's whole classifier and its class names."""
    model = _load_run_model(run_dir)
    saved = tuple(model.input_shape[1:])
    if saved != tuple(input_shape):
        raise ValueError(
            f"the source model in {run_dir} takes inputs of shape {saved}, "
            f"but this run feeds {tuple(input_shape)}; use input size {saved[0]}x{saved[1]}"
        )
    return model, _run_classes(run_dir)


def _run_classes(run_dir: Path) -> list[str]:
    """Class names of a run: ``metrics.json`` "classes", else ``classes.json``."""
    metrics = run_dir / "metrics.json"
    if metrics.is_file():
        data = json.loads(metrics.read_text())
        if isinstance(data, dict) and data.get("classes"):
            return [str(c) for c in data["classes"]]
    classes = run_dir / "classes.json"
    if classes.is_file():
        return [str(c) for c in json.loads(classes.read_text())]
    raise FileNotFoundError(
        f"no class names for the source model in {run_dir}: expected 'classes' in "
        f"{metrics} or a {classes} file"
    )
