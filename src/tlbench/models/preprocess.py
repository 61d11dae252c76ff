"""The ``Preprocess`` layer: raw RGB images (float, 0..255) -> a backbone's expected input.

Every model the study builds takes raw images and normalises them *inside* the
model, so a saved ``model.keras`` can be applied to plain pixels. The modes are
the ones ``keras.applications.*.preprocess_input`` implement (channels-last):

``tf``
    ``x / 127.5 - 1`` (range -1..1): MobileNet, MobileNetV2, NASNet, Xception,
    Inception, ResNetV2.
``torch``
    ``(x / 255 - mean) / std`` with the ImageNet RGB mean and std: DenseNet,
    and torchvision-style models (AlexNet).
``caffe``
    RGB -> BGR, then minus the ImageNet BGR mean, no scaling: VGG, ResNet.
``unit``
    ``x / 255`` (range 0..1): the custom CNNs trained from scratch.
``none``
    identity: models that rescale inside themselves (EfficientNet, ConvNeXt,
    MobileNetV3, EfficientNetV2).

The layer uses ``keras.ops`` only, so it runs on any Keras backend, and it is
registered for serialization under the package name ``tlbench``.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

#: ImageNet channel statistics used by Keras's ``imagenet_utils``.
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
IMAGENET_MEAN_BGR_255 = (103.939, 116.779, 123.68)

#: Valid values of ``Preprocess(mode)``.
PREPROCESS_MODES = ("tf", "torch", "caffe", "unit", "none")


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is a valid preprocessing mode, else raise ``ValueError``."""
    if mode not in PREPROCESS_MODES:
        raise ValueError(
            f"unknown preprocessing mode {mode!r}; valid modes: {', '.join(PREPROCESS_MODES)}"
        )
    return mode


@keras.saving.register_keras_serializable(package="tlbench")
class Preprocess(keras.layers.Layer):
    """Map float RGB images in 0..255 (channels last) to a backbone's input range.

    Args:
        mode: one of :data:`PREPROCESS_MODES` (see the module docstring).
    """

    def __init__(self, mode: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.mode = check_mode(mode)
        self.supports_masking = True

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(IMAGENET_MEAN_RGB, dtype=self.compute_dtype)
            std = ops.convert_to_tensor(IMAGENET_STD_RGB, dtype=self.compute_dtype)
            return (x / 255.0 - mean) / std
        if self.mode == "caffe":
            mean = ops.convert_to_tensor(IMAGENET_MEAN_BGR_255, dtype=self.compute_dtype)
            return ops.flip(x, axis=-1) - mean
        if self.mode == "unit":
            return x / 255.0
        return x  # "none"

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["mode"] = self.mode
        return config


@keras.saving.register_keras_serializable(package="tlbench")
class Standardize(keras.layers.Layer):
    """Per-image standardisation: ``(x - mean(x)) / max(std(x), 1 / sqrt(n))``.

    Mean and standard deviation are taken over each image's ``n`` values (all
    pixels and channels together, as ``tf.image.per_image_standardization``), so
    relative colour is kept while brightness and contrast are removed: dark,
    low-contrast photographs (common in GTSRB) reach the network at the same scale
    as bright ones. The floor keeps uniform images finite. ``keras.ops`` only.
    """

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        axes = tuple(range(1, len(x.shape)))
        n = 1
        for dim in x.shape[1:]:
            n *= int(dim)
        mean = ops.mean(x, axis=axes, keepdims=True)
        std = ops.sqrt(ops.mean(ops.square(x - mean), axis=axes, keepdims=True))
        return (x - mean) / ops.maximum(std, 1.0 / n**0.5)

    def compute_output_shape(self, input_shape):
        return input_shape


#: ITU-R BT.601 luma weights (JPEG's YCbCr), R, G, B.
LUMA_RGB = (0.299, 0.587, 0.114)


@keras.saving.register_keras_serializable(package="tlbench")
class Equalize(keras.layers.Layer):
    """Per-image histogram equalisation of the luma, hue and saturation kept.

    Each image's luma ``Y`` (BT.601, as in JPEG's YCbCr) is quantised to
    ``bins`` levels of ``value_range`` and mapped through the image's own
    cumulative histogram, ``Y' = (cdf(Y) - cdf_min) / (n - cdf_min)`` scaled to
    ``value_range`` (the classic equalisation of OpenCV's ``equalizeHist``);
    the chroma ``Cb, Cr`` is kept and the image converted back to RGB and
    clipped to ``value_range``. Dark, low-contrast photographs (common in GTSRB)
    are spread over the whole range while colour, which tells traffic signs
    apart, is unchanged; an image of one luma level passes unchanged. Unlike
    Keras's ``Equalization`` (each channel on its own, which shifts hues) the
    channels keep their relation. Deterministic (training and inference alike);
    ``keras.ops`` only, batched with one segment sum, so it runs on any backend.

    Args:
        value_range: (low, high) of the input values; 0..1 after ``Preprocess("unit")``.
        bins: histogram levels (256: 8-bit images).
    """

    def __init__(self, value_range=(0.0, 1.0), bins: int = 256, **kwargs: Any):
        super().__init__(**kwargs)
        low, high = (float(v) for v in value_range)
        if not high > low:
            raise ValueError(
                f"Equalize value_range must be (low, high) with high > low, got {value_range!r}"
            )
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
            raise ValueError(f"Equalize bins must be an integer >= 2, got {bins!r}")
        self.value_range = (low, high)
        self.bins = bins

    def call(self, inputs):
        low, high = self.value_range
        x = ops.cast(inputs, "float32")
        r, g, b = x[..., 0], x[..., 1], x[..., 2]
        wr, wg, wb = LUMA_RGB
        y = wr * r + wg * g + wb * b
        cb, cr = (b - y) / (2 * (1 - wb)), (r - y) / (2 * (1 - wr))
        batch = ops.shape(x)[0]
        n = int(x.shape[1]) * int(x.shape[2])
        level = ops.cast(ops.floor((y - low) / (high - low) * self.bins), "int32")
        level = ops.reshape(ops.clip(level, 0, self.bins - 1), (batch, n))
        # Histograms of every image at once: image i's levels are offset by i * bins.
        offsets = ops.expand_dims(ops.arange(batch, dtype="int32") * self.bins, 1)
        hist = ops.segment_sum(
            ops.ones((batch * n,), dtype="float32"),
            ops.reshape(level + offsets, (-1,)),
            num_segments=batch * self.bins,
        )
        cdf = ops.cumsum(ops.reshape(hist, (batch, self.bins)), axis=1)
        cdf_min = ops.min(ops.where(cdf > 0, cdf, float(n)), axis=1, keepdims=True)
        span = float(n) - cdf_min
        mapped = (cdf - cdf_min) / ops.maximum(span, 1.0)  # 0..1 per level
        y_eq = ops.take_along_axis(mapped, level, axis=1) * (high - low) + low
        y_eq = ops.where(span > 0, y_eq, ops.reshape(y, (batch, n)))  # one level: unchanged
        y_eq = ops.reshape(y_eq, ops.shape(y))
        out = ops.stack(
            [
                y_eq + 2 * (1 - wr) * cr,
                y_eq - (2 * wb * (1 - wb) * cb + 2 * wr * (1 - wr) * cr) / wg,
                y_eq + 2 * (1 - wb) * cb,
            ],
            axis=-1,
        )
        return ops.cast(ops.clip(out, low, high), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "value_range": list(self.value_range), "bins": self.bins}
