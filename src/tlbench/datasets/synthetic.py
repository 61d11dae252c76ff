"""``synthetic``: tiny generated, clearly separable classes for unit tests.

Class ``c`` of ``k`` has its own colour (hue ``c / k``) and stripe orientation
(angle ``pi * c / k``); each image has a random stripe phase and Gaussian pixel
noise. Generated directly at the target size; deterministic given ``seed``.
:func:`make_tiny_prepared` prepares such a dataset through the normal
``prepare()`` path.
"""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Any

import numpy as np

from tlbench.datasets.base import (
    Option,
    RawSplits,
    fraction,
    generated_splits,
    positive,
    register,
)
from tlbench.datasets.images import Size


def generate(
    num_classes: int, per_class: int, size: Size, seed: int, noise: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images uint8 N x H x W x 3, labels)`` with ``per_class`` images per class."""
    if num_classes < 2 or per_class < 1:
        raise ValueError(
            f"synthetic needs num_classes >= 2 and per_class >= 1, got {num_classes}, {per_class}"
        )
    rng = np.random.default_rng([seed, 0x5E7])
    height, width = size
    yy, xx = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
    labels = np.repeat(np.arange(num_classes), per_class)
    angle = np.pi * labels / num_classes
    phase = rng.uniform(0, 2 * np.pi, len(labels))
    coord = xx[None] * np.cos(angle)[:, None, None] + yy[None] * np.sin(angle)[:, None, None]
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * coord + phase[:, None, None])
    colours = np.array([colorsys.hsv_to_rgb(c / num_classes, 0.8, 1.0) for c in range(num_classes)])
    images = colours[labels][:, None, None, :] * (0.35 + 0.65 * stripes[..., None])
    images = images + rng.normal(0.0, noise, images.shape)
    return np.clip(np.rint(images * 255), 0, 255).astype(np.uint8), labels


@register(
    "synthetic",
    class_count=lambda options: options["num_classes"],
    num_classes=Option(3, (int,), "number of classes", positive),
    per_class=Option(24, (int,), "images per class", positive),
    noise=Option(0.1, (float, int), "std of the pixel noise (1.0 = full range)"),
    val_fraction=Option(0.2, (float,), "validation fraction per class", fraction),
    test_fraction=Option(0.2, (float,), "test fraction per class", fraction),
)
def load_synthetic(options: dict[str, Any], workdir: Path, seed: int, size: Size) -> RawSplits:
    """Generate the synthetic set and split it stratified (test, then validation)."""
    images, labels = generate(
        options["num_classes"], options["per_class"], size, seed, float(options["noise"])
    )
    classes = [f"class_{c}" for c in range(options["num_classes"])]
    return generated_splits(images, labels, classes, seed, options, "generated")
