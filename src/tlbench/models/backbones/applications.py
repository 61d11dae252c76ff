"""Backbones: feature extractors by name, with their weights, preprocessing and blocks.

``BACKBONES`` holds one builder per name, ``build(name, weights, kwargs,
input_shape) -> Backbone``:

* every model of ``keras.applications`` under its Keras name (discovered from
  the installed Keras, not from a hand list), built with ``include_top=False``;
  ``kwargs`` are passed through (e.g. ``alpha``);
* custom CNNs (:mod:`tlbench.models.backbones.custom`): ``seed003_cnn`` (seeds 003/004),
  ``seed000_cnn`` (seed 000's ``CNN_10_relu``), ``alexnet`` (architecture only) and
  ``small_cnn``.

A backbone ``model`` is named ``"backbone"`` and maps *preprocessed* images to
features (a 4D map, or a 2D vector for ``seed000_cnn`` and ``pooling=...``);
``Backbone.preprocess_mode`` says which :class:`tlbench.models.preprocess.Preprocess`
mode must come first.

Weights (``cfg["weights"]``): ``"imagenet"`` loads the real ImageNet weights
through Keras's own call and cache folder (``$KERAS_HOME/models``, default
``~/.keras/models``, read when the backbone is built); when the file is neither
cached nor downloadable, :class:`MissingWeightsError` names the file and folder;
there is never a fallback to random weights. ``"none"`` is random
initialisation (drawn from the run's seed), a path loads a weights file,
``{"run": folder}`` takes the nested ``"backbone"`` layer of that earlier run's
``model.keras``, and ``{"random": SEED}`` is random initialisation drawn from ``SEED``
alone (:func:`random_init_seed`; :mod:`tlbench.models.weights`), not pretrained.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import os
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras.src.backend.common import global_state
from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR
from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED

from tlbench.core.errors import MissingWeightsError
from tlbench.models.backbones.base import BACKBONES, Backbone, check_min_size, layer_blocks
from tlbench.models.backbones.from_run import copy_weights, load_run_backbone, load_run_classifier
from tlbench.models.backbones.hub_presets import PRESET_WEIGHTS
from tlbench.models.backbones.keras_weights import (
    MOBILENET_ALPHAS,
    imagenet_classes,
    keras_weights_cache,
    mobilenet_224_no_top,
)
from tlbench.models.preprocess import (
    IMAGENET_MEAN_BGR_255,
    IMAGENET_MEAN_RGB,
    IMAGENET_STD_RGB,
    Preprocess,
)
from tlbench.models.weights import RANDOM, check_random_seed, random_seed

#: Keys of a backbone config.
CONFIG_KEYS = ("name", "weights", "kwargs")
WEIGHTS_HELP = (
    "imagenet, none, a path to a weights file (.h5/.weights.h5), {run: <run folder>}, "
    "or {random: SEED}"
)

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


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def build_backbone(cfg: dict, input_shape: tuple[int, int, int]) -> Backbone:
    """Build the backbone described by ``cfg`` for images of ``input_shape`` (H, W, C).

    ``cfg = {"name": "MobileNetV2", "weights": "imagenet" | "none" | "<path>" |
    {"run": "<run folder>"} | {"random": SEED}, "kwargs": {"alpha": 0.35}}``. An input
    side below the built backbone's ``min_size`` is an error (also for a registered
    builder that does not check it itself). ``{"random": SEED}`` builds the random
    initialisation inside :func:`random_init_seed` (``pretrained`` False).
    """
    name, weights, kwargs = _parse_config(cfg)
    input_shape = _check_input_shape(input_shape)
    builder = BACKBONES.get(name)
    seed = random_seed(weights)
    if seed is not None:
        with random_init_seed(seed):
            backbone = builder(name, "none", kwargs, input_shape)
        check_min_size(name, input_shape, getattr(backbone, "min_size", None) or 1)
        return backbone
    if isinstance(weights, dict):
        backbone = builder(name, "none", kwargs, input_shape)
        check_min_size(name, input_shape, getattr(backbone, "min_size", None) or 1)
        source = load_run_backbone(Path(weights["run"]))
        copy_weights(source, backbone.model, what=f"{name} from run {weights['run']}")
        backbone.pretrained = True
        return backbone
    backbone = builder(name, weights, kwargs, input_shape)
    check_min_size(name, input_shape, getattr(backbone, "min_size", None) or 1)
    return backbone


@contextlib.contextmanager
def random_init_seed(seed: int) -> Iterator[None]:
    """Inside: random draws come from ``seed`` alone (``keras.utils.set_random_seed``:
    Python, NumPy, TensorFlow, torch and Keras's global ``SeedGenerator``), so layers
    built here get the same initial weights whatever seeding came before. After: the
    caller's random state is back as it was (the Python, NumPy and torch streams where
    they were, Keras's recorded seed and global generator), and TensorFlow's global seed
    (which cannot be read back) is set again to Keras's recorded one, the run's seed
    that ``tlbench.training.engine`` set, or cleared when none was recorded. Keras draws its
    initialisers' seeds from the Python stream, so the layers built after this (the
    run's head) get what they would have got without it."""

    keras_state = {
        key: global_state.get_global_attribute(key)
        for key in (GLOBAL_RANDOM_SEED, GLOBAL_SEED_GENERATOR)
    }
    python_state, numpy_state = random.getstate(), np.random.get_state()
    torch = sys.modules.get("torch") if keras.backend.backend() == "torch" else None
    torch_state = torch.get_rng_state() if torch is not None else None
    keras.utils.set_random_seed(int(seed))
    try:
        yield
    finally:
        for key, value in keras_state.items():
            global_state.set_global_attribute(key, value)
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        if torch is not None:
            torch.set_rng_state(torch_state)
        tf = sys.modules.get("tensorflow")
        if tf is not None:  # imported: keras.utils.set_random_seed seeded it
            tf.random.set_seed(keras_state[GLOBAL_RANDOM_SEED])


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
    """``None``/"none" -> "none"; "imagenet"; an existing path (str); {"run": str};
    {"random": int} (its seed checked)."""
    if weights is None or weights == "none":
        return "none"
    if weights in ("imagenet", PRESET_WEIGHTS):
        return weights
    if isinstance(weights, dict) and set(weights) == {RANDOM}:
        return {RANDOM: check_random_seed(weights[RANDOM], "backbone weights random")}
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
    check_min_size(name, input_shape, min_size)
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
        if name in MOBILENET_ALPHAS and input_shape[:2] != (224, 224):
            call_weights = str(mobilenet_224_no_top(name, kwargs))
    with keras_weights_cache(name):
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


def build_source_classifier(
    cfg: dict, input_shape: tuple[int, int, int]
) -> tuple[keras.Model, list[str]]:
    """A whole source-task classifier for the ``direct`` strategy, and its class names.

    The model takes RAW float images (0..255) of ``input_shape`` and returns
    source-class probabilities. ``weights: imagenet`` gives
    ``Preprocess + keras.applications.X(include_top=True)`` (images are resized
    to the model's default ImageNet size first when they differ) with the 1000
    ImageNet class names; ``{"run": folder}`` gives that run's ``model.keras`` and
    its classes (resized to its input size first too). Other weights are an error:
    ``direct`` needs a trained source model; a run's model that takes another number of
    channels is an :class:`InputShapeError`.
    """
    name, weights, kwargs = _parse_config(cfg)
    input_shape = _check_input_shape(input_shape)
    if isinstance(weights, dict) and "run" in weights:
        return load_run_classifier(Path(weights["run"]), input_shape)
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
    with keras_weights_cache(name):
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


# The custom CNNs and the keras-hub presets register themselves into BACKBONES (after the
# keras.applications models, as before the split).
from tlbench.models.backbones import custom, hub  # noqa: E402,F401
