"""The reader of an autoencoder run's ``reconstructions.npz`` (the images and each
stage's reconstructions of them: tlbench.strategies.autoencoder)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np


def load_reconstructions(
    path: str | os.PathLike,
) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """``(images, [(stage name, reconstructions), ...])`` from a ``reconstructions.npz``.

    Stages are the keys ``stage1``, ``stage2``, ... in numeric order; each must
    have the shape of ``images`` (N x H x W x 3).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reconstructions file not found: {path}")
    with np.load(path) as data:
        keys = list(data.keys())
        if "images" not in keys:
            raise ValueError(f"{path} has no 'images' array; keys: {', '.join(keys)}")
        images = data["images"]
        stage_keys = sorted(
            (k for k in keys if re.fullmatch(r"stage\d+", k)), key=lambda k: int(k[5:])
        )
        unknown = [k for k in keys if k != "images" and k not in stage_keys]
        if unknown:
            raise ValueError(
                f"{path} has unexpected key(s) {', '.join(unknown)}; valid: images, stage1, stage2, ..."
            )
        if not stage_keys:
            raise ValueError(f"{path} has no stage1, stage2, ... arrays")
        stages = [(k, data[k]) for k in stage_keys]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{path}: 'images' must be N x H x W x 3, got shape {images.shape}")
    for key, array in stages:
        if array.shape != images.shape:
            raise ValueError(
                f"{path}: '{key}' has shape {array.shape}, expected {images.shape} like 'images'"
            )
    return images, stages
