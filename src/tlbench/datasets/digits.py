"""``digits``: scikit-learn's bundled handwritten digits (no download).

1,797 8x8 greyscale images of the digits 0-9 (values 0..16), scaled to
0..255, replicated to RGB and resized (bicubic) to the target size.

Splits (stratified, seeded):

* default: ``test_fraction`` (0.2) of each class is test, then
  ``val_fraction`` (0.1) of the rest is validation;
* low-data regime: with ``train_per_class`` (e.g. 10) that many images per
  class are the training set, ``val_per_class`` (default: the same number)
  the validation set, and all the rest the test set (or, with
  ``test_fraction`` given, that fraction of each class).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tlbench.datasets.base import (
    Option,
    RawSplits,
    SplitData,
    fraction,
    positive,
    register,
    split_pool,
)
from tlbench.datasets.images import Size, resize_array
from tlbench.datasets.splits import stratified_split, take_per_class


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """Return scikit-learn's digits as ``(uint8 N x 8 x 8 grey, int64 labels)``."""
    # deferred: scikit-learn only for this loader
    from sklearn.datasets import load_digits

    bunch = load_digits()
    grey = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return grey, bunch.target.astype(np.int64)


@register(
    "digits",
    class_count=lambda options: 10,
    train_per_class=Option(None, (int,), "labelled training images per class (low-data)", positive),
    val_per_class=Option(
        None, (int,), "validation images per class (default train_per_class)", positive
    ),
    val_fraction=Option(0.1, (float,), "validation fraction (without train_per_class)", fraction),
    test_fraction=Option(None, (float,), "test fraction (default 0.2, or the rest)", fraction),
)
def load_digits(options: dict[str, Any], workdir: Path, seed: int, size: Size) -> RawSplits:
    """Load the digits and split them (see module docstring)."""
    grey, labels = digits_images()
    pool = SplitData(labels, images=resize_array(grey, size))
    classes = [str(d) for d in range(10)]
    per_class = options["train_per_class"]
    if per_class is None:
        if options["val_per_class"] is not None:
            raise ValueError("digits option val_per_class needs train_per_class")
        test_fraction = options["test_fraction"] or 0.2
        train, val, test = split_pool(
            pool,
            seed,
            val_fraction=options["val_fraction"],
            test_fraction=test_fraction,
            classes=classes,
        )
        validation = f"stratified random {options['val_fraction']:.0%} of each class"
        test_split = f"stratified random {test_fraction:.0%} of each class"
    else:
        test = None
        test_split = "all images not in train or val"
        if options["test_fraction"] is not None:
            keep, carved = stratified_split(
                labels, options["test_fraction"], seed, what="test", class_names=classes
            )
            test, pool = pool.subset(carved), pool.subset(keep)
            test_split = f"stratified random {options['test_fraction']:.0%} of each class"
        taken, rest = take_per_class(pool.labels, per_class, seed + 1, class_names=classes)
        train, pool = pool.subset(taken), pool.subset(rest)
        val_per_class = options["val_per_class"] or per_class
        taken, rest = take_per_class(
            pool.labels, val_per_class, seed + 2, what="val", class_names=classes
        )
        val = pool.subset(taken)
        if test is None:
            test = pool.subset(rest)
        validation = f"{val_per_class} random images per class"
    return RawSplits(
        classes=classes,
        train=train,
        val=val,
        test=test,
        validation=validation,
        test_split=test_split,
        sources=[{"path": "sklearn.datasets.load_digits", "sha256": None}],
    )
