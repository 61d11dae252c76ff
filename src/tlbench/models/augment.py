"""Augmentation presets built of Keras preprocessing layers.

``AUGMENTATIONS`` maps a preset name to ``preset(params) -> list[keras.layers.Layer]``;
:func:`build_augmentation` wraps the layers in a ``keras.Sequential`` named
``"augmentation"``. Inputs are float RGB images in 0..255 (before
:class:`tlbench.models.preprocess.Preprocess`). Every layer is random only when called
with ``training=True`` (as in ``fit``) and the identity at inference, and all of
them use ``keras.ops`` / Keras layers only, so they run on any Keras backend.

Params override a preset's defaults; unknown params are an error listing the
valid ones. Presets and their params (defaults):

* ``none``: the identity (one ``Identity`` layer; an empty Sequential cannot be built).
* ``flip``: ``mode`` ("horizontal") -> ``RandomFlip``.
* ``rotation``: ``factor`` (0.1, fraction of a full turn) -> ``RandomRotation``.
* ``zoom``: ``factor`` (0.1) -> ``RandomZoom`` (zoom in and out by up to 10 %).
* ``translation``: ``factor`` (0.1, fraction of the side) -> ``RandomTranslation``.
* ``brightness``: ``factor`` (0.2, additive, fraction of 255) -> ``RandomBrightness``.
* ``contrast``: ``factor`` (0.2, contrast in [1-f, 1+f]) -> ``RandomContrast``.
* ``random_crop``: ``scale`` (1.1) -> :class:`RandomRescaleCrop` (resize up by
  ``scale``, random crop back to the input size).
* ``noise``: ``stddev`` (5.0, in pixel units 0..255) -> :class:`ClippedGaussianNoise`
  (Keras's ``GaussianNoise`` allows only stddev <= 1 and does not clip).
* ``geometric``: rotation, zoom and shift without flips (traffic signs, digits),
  optionally with ``brightness`` / ``contrast`` jitter.
* ``seed001``: seed 001's augmentation for EfficientNetB0 (see :func:`seed001`).
* ``seed003``: seed 003's augmentation for the custom CNN (see :func:`seed003`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from tlbench.core.registry import Registry

Preset = Callable[[dict | None], list[keras.layers.Layer]]

AUGMENTATIONS: Registry[Preset] = Registry("augmentation")

#: The pixel range the augmentation layers work in.
VALUE_RANGE = (0.0, 255.0)


def build_augmentation(
    name: str, params: dict | None, image_size: tuple[int, int]
) -> keras.Sequential:
    """The preset ``name`` with ``params`` as a Sequential named ``"augmentation"``.

    The Sequential is built for images of ``image_size`` (height, width) with 3
    channels; for ``none`` it returns its input unchanged.
    """
    preset = AUGMENTATIONS.get(name)
    height, width = (int(s) for s in image_size)
    if height < 1 or width < 1:
        raise ValueError(f"image_size must be positive (height, width), got {image_size!r}")
    layers = preset(params)
    model = keras.Sequential(layers, name="augmentation")
    model.build((None, height, width, 3))
    return model


def preset_defaults(name: str) -> dict[str, Any]:
    """The default params of preset ``name`` (a copy)."""
    return dict(AUGMENTATIONS.get(name).defaults)


def _preset(name: str, **defaults: Any) -> Callable[[Callable[[dict], list]], Preset]:
    """Register ``fn(params)`` as preset ``name``; params are checked against ``defaults``."""

    def decorator(fn: Callable[[dict], list]) -> Preset:
        def preset(params: dict | None = None) -> list[keras.layers.Layer]:
            params = dict(params or {})
            unknown = sorted(set(params) - set(defaults))
            if unknown:
                raise ValueError(
                    f"unknown params {unknown} for augmentation {name!r}; valid params: "
                    + (", ".join(sorted(defaults)) or "(none)")
                )
            return fn({**defaults, **params})

        preset.__name__ = fn.__name__
        preset.__doc__ = fn.__doc__
        preset.defaults = dict(defaults)  # type: ignore[attr-defined]
        return AUGMENTATIONS.register(name)(preset)

    return decorator


# ---------------------------------------------------------------------------
# Custom layers
# ---------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="tlbench")
class RandomBrightnessScale(keras.layers.Layer):
    """Multiply each image by a random factor in [lower, upper], clip to ``value_range``.

    Multiplicative brightness (Keras's ``RandomBrightness`` is additive). Identity
    when ``training`` is false.
    """

    def __init__(
        self,
        lower: float,
        upper: float,
        value_range: tuple[float, float] = VALUE_RANGE,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if not 0 <= lower <= upper:
            raise ValueError(f"need 0 <= lower <= upper, got lower={lower}, upper={upper}")
        self.lower = float(lower)
        self.upper = float(upper)
        self.value_range = tuple(float(v) for v in value_range)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=True):
        if not training:
            return inputs
        x = ops.cast(inputs, self.compute_dtype)
        shape = (ops.shape(x)[0], 1, 1, 1) if len(x.shape) == 4 else (1, 1, 1)
        factor = keras.random.uniform(
            shape,
            minval=self.lower,
            maxval=self.upper,
            dtype=self.compute_dtype,
            seed=self.seed_generator,
        )
        return ops.clip(x * factor, self.value_range[0], self.value_range[1])

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            lower=self.lower, upper=self.upper, value_range=list(self.value_range), seed=self.seed
        )
        return config


@keras.saving.register_keras_serializable(package="tlbench")
class ClippedGaussianNoise(keras.layers.Layer):
    """Add N(0, ``stddev``) noise (pixel units), clip to ``value_range``; training only."""

    def __init__(
        self,
        stddev: float,
        value_range: tuple[float, float] = VALUE_RANGE,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if stddev < 0:
            raise ValueError(f"noise stddev must be >= 0, got {stddev}")
        self.stddev = float(stddev)
        self.value_range = tuple(float(v) for v in value_range)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=True):
        if not training or self.stddev == 0:
            return inputs
        x = ops.cast(inputs, self.compute_dtype)
        noise = keras.random.normal(
            ops.shape(x), stddev=self.stddev, dtype=self.compute_dtype, seed=self.seed_generator
        )
        return ops.clip(x + noise, self.value_range[0], self.value_range[1])

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(stddev=self.stddev, value_range=list(self.value_range), seed=self.seed)
        return config


@keras.saving.register_keras_serializable(package="tlbench")
class RandomRescaleCrop(keras.layers.Layer):
    """Resize up by ``scale``, then random-crop back to the input size (training only).

    E.g. ``scale=235/224`` at 224x224 resizes to 235x235 and crops a random
    224x224 window, like seed 001's pipeline. Identity when ``training`` is false
    (unlike Keras's ``RandomCrop``, which centre-crops at inference).
    """

    def __init__(
        self,
        scale: float,
        interpolation: str = "bilinear",
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if scale < 1:
            raise ValueError(f"RandomRescaleCrop scale must be >= 1, got {scale}")
        self.scale = float(scale)
        self.interpolation = interpolation
        self.seed = seed
        self._size: tuple[int, int] | None = None
        self._crop: keras.layers.RandomCrop | None = None

    def build(self, input_shape):
        height, width = input_shape[-3], input_shape[-2]
        if height is None or width is None:
            raise ValueError(f"RandomRescaleCrop needs a static image size, got {input_shape}")
        self._size = (math.ceil(height * self.scale), math.ceil(width * self.scale))
        self._crop = keras.layers.RandomCrop(height, width, seed=self.seed, name="crop")
        self._crop.build((None, *self._size, input_shape[-1]))

    def call(self, inputs, training=True):
        if not training:
            return inputs
        x = ops.cast(inputs, self.compute_dtype)
        x = ops.image.resize(x, self._size, interpolation=self.interpolation)
        return self._crop(x, training=True)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(scale=self.scale, interpolation=self.interpolation, seed=self.seed)
        return config


# ---------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------


@_preset("none")
def no_augmentation(p: dict) -> list[keras.layers.Layer]:
    """No augmentation: a single ``Identity`` layer."""
    return [keras.layers.Identity(name="identity")]


@_preset("flip", mode="horizontal")
def flip(p: dict) -> list[keras.layers.Layer]:
    """Random flips: ``mode`` is horizontal, vertical or horizontal_and_vertical."""
    return [keras.layers.RandomFlip(p["mode"], name="flip")]


@_preset("rotation", factor=0.1, fill_mode="reflect")
def rotation(p: dict) -> list[keras.layers.Layer]:
    """Random rotation by up to ``factor`` of a full turn."""
    return [keras.layers.RandomRotation(p["factor"], fill_mode=p["fill_mode"], name="rotation")]


@_preset("zoom", factor=0.1, fill_mode="reflect")
def zoom(p: dict) -> list[keras.layers.Layer]:
    """Random zoom in/out by up to ``factor`` (same factor for height and width)."""
    return [keras.layers.RandomZoom(p["factor"], fill_mode=p["fill_mode"], name="zoom")]


@_preset("translation", factor=0.1, fill_mode="reflect")
def translation(p: dict) -> list[keras.layers.Layer]:
    """Random shift by up to ``factor`` of the height and of the width."""
    return [
        keras.layers.RandomTranslation(
            p["factor"], p["factor"], fill_mode=p["fill_mode"], name="translation"
        )
    ]


@_preset(
    "geometric",
    rotation_degrees=10.0,
    zoom=0.1,
    translation=0.1,
    fill_mode="reflect",
    brightness=0.0,
    contrast=0.0,
)
def geometric(p: dict) -> list[keras.layers.Layer]:
    """Rotation (up to ``rotation_degrees``), zoom and shift (fractions of the side), no flip:
    for traffic signs, digits or text, where a mirror image can be another class.

    ``brightness`` and ``contrast`` (0 = off, the default) add the photometric jitter
    of the ``brightness`` and ``contrast`` presets after the geometric layers.
    """
    if p["brightness"] < 0 or p["contrast"] < 0:
        raise ValueError(
            f"geometric: brightness {p['brightness']!r} and contrast {p['contrast']!r} "
            "must be >= 0 (0 = off)"
        )
    layers = [
        keras.layers.RandomRotation(
            p["rotation_degrees"] / 360.0, fill_mode=p["fill_mode"], name="rotation"
        ),
        keras.layers.RandomZoom(p["zoom"], fill_mode=p["fill_mode"], name="zoom"),
        keras.layers.RandomTranslation(
            p["translation"], p["translation"], fill_mode=p["fill_mode"], name="translation"
        ),
    ]
    if p["brightness"] > 0:
        layers += brightness({"factor": p["brightness"]})
    if p["contrast"] > 0:
        layers += contrast({"factor": p["contrast"]})
    return layers


@_preset("brightness", factor=0.2)
def brightness(p: dict) -> list[keras.layers.Layer]:
    """Random additive brightness: ``+- factor * 255``, clipped to 0..255."""
    return [keras.layers.RandomBrightness(p["factor"], value_range=VALUE_RANGE, name="brightness")]


@_preset("contrast", factor=0.2)
def contrast(p: dict) -> list[keras.layers.Layer]:
    """Random contrast factor in ``[1 - factor, 1 + factor]``, clipped to 0..255.

    Keras 3's ``RandomContrast(f)`` with a single float draws from ``[1, 1 + f]`` only
    (it sets the lower bound to 0, whatever its docstring says), so the bounds are
    passed as the pair ``(f, f)``.
    """
    f = p["factor"]
    return [keras.layers.RandomContrast((f, f), value_range=VALUE_RANGE, name="contrast")]


@_preset("random_crop", scale=1.1)
def random_crop(p: dict) -> list[keras.layers.Layer]:
    """Resize up by ``scale`` and random-crop back to the input size."""
    return [RandomRescaleCrop(p["scale"], name="random_crop")]


@_preset("noise", stddev=5.0)
def noise(p: dict) -> list[keras.layers.Layer]:
    """Additive Gaussian noise with ``stddev`` in pixel units (0..255 scale), clipped."""
    return [ClippedGaussianNoise(p["stddev"], name="noise")]


@_preset(
    "seed001",
    contrast=1.0,
    brightness=0.3,
    noise_stddev=0.6,
    crop_scale=235 / 224,
    rotation=0.02,
)
def seed001(p: dict) -> list[keras.layers.Layer]:
    """Seed 001 (Oregon Wildlife, EfficientNetB0), mapped to Keras layers in its order.

    * ``contrast_factor = 2`` -> ``RandomContrast(1.0)``: a contrast factor drawn
      from [1, 2] (Keras 3 draws ``[1, 1 + f]`` for a single float), whose upper end
      is the seed's factor 2 (Keras draws, the seed applied a fixed ``adjust_contrast``).
      This is the layer seed 001's study was measured with, so it is kept as is.
    * ``delta = 0.3`` (brightness on a 0..1 scale) -> ``RandomBrightness(0.3)``
      with value range 0..255: a shift of up to +-0.3 * 255.
    * ``GaussianNoise(stddev=0.6)`` -> :class:`ClippedGaussianNoise` (0.6) on raw
      0..255 pixels, as in the seed (EfficientNet takes raw pixels and rescales
      inside), clipped to 0..255.
    * random crop, images resized to 235x235 then ``RandomCrop(224, 224)`` ->
      :class:`RandomRescaleCrop` with scale 235/224 at any input size.
    * ``RandomRotation(factor=0.02)`` -> the same layer.
    """
    return [
        keras.layers.RandomContrast(p["contrast"], value_range=VALUE_RANGE, name="contrast"),
        keras.layers.RandomBrightness(p["brightness"], value_range=VALUE_RANGE, name="brightness"),
        ClippedGaussianNoise(p["noise_stddev"], name="noise"),
        RandomRescaleCrop(p["crop_scale"], name="random_crop"),
        keras.layers.RandomRotation(p["rotation"], name="rotation"),
    ]


@_preset(
    "seed003",
    rotation_degrees=10.0,
    zoom=0.1,
    brightness=(0.7, 1.3),
    flip="horizontal",
)
def seed003(p: dict) -> list[keras.layers.Layer]:
    """Seed 003 (Oxford-IIIT Pet, custom CNN): rotation 10 degrees, zoom 10 %,
    brightness x [0.7, 1.3], horizontal flip.

    Rotation -> ``RandomRotation(10 / 360)`` (Keras takes a fraction of a turn);
    zoom -> ``RandomZoom(0.1)``; multiplicative brightness ->
    :class:`RandomBrightnessScale` (0.7, 1.3); flip -> ``RandomFlip("horizontal")``.
    """
    lower, upper = p["brightness"]
    return [
        keras.layers.RandomRotation(p["rotation_degrees"] / 360.0, name="rotation"),
        keras.layers.RandomZoom(p["zoom"], name="zoom"),
        RandomBrightnessScale(lower, upper, name="brightness_scale"),
        keras.layers.RandomFlip(p["flip"], name="flip"),
    ]
