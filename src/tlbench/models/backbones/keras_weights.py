"""Keras's pretrained weights without a network: files looked up in the Keras cache
(``KERAS_HOME``) first and downloaded only when missing (:func:`cached_keras_file`),
MobileNet's 224-px files for other input sizes, and the ImageNet class names.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from keras.src.applications import imagenet_utils, mobilenet, mobilenet_v2
from keras.src.utils import file_utils

from tlbench.core.errors import MissingWeightsError


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names (index = Keras's class index), from the Keras cache."""

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


def mobilenet_224_no_top(name: str, kwargs: dict) -> Path:
    """The cached 224 no-top ImageNet file of MobileNet/MobileNetV2 (size independent).

    File names follow ``keras.applications.mobilenet`` / ``mobilenet_v2``.
    """
    alpha = float(kwargs.get("alpha", 1.0))
    if alpha not in MOBILENET_ALPHAS[name]:
        raise ValueError(
            f"{name} has ImageNet weights only for alpha in {MOBILENET_ALPHAS[name]}, got {alpha}"
        )
    if name == "MobileNet":
        module = mobilenet
        if kwargs.get("depth_multiplier", 1) != 1:
            raise ValueError("MobileNet ImageNet weights need depth_multiplier 1")
        alpha_text = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}[alpha]
        fname = f"mobilenet_{alpha_text}_224_tf_no_top.h5"
    else:
        module = mobilenet_v2
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

    return file_utils.get_file


_KERAS_GET_FILE = _keras_get_file()


@contextlib.contextmanager
def keras_weights_cache(name: str) -> Iterator[None]:
    """While building ``name``, serve Keras's weight look-ups from :func:`cached_keras_file`.

    ``keras.applications`` calls ``file_utils.get_file(fname, origin,
    cache_subdir="models", ...)``; Keras reads ``KERAS_HOME`` only once at import
    and silently swaps a read-only cache for ``/tmp/.keras``, so tlbench resolves
    the file itself (current ``KERAS_HOME``) and raises a clear
    :class:`MissingWeightsError` when it is absent and cannot be downloaded.
    """

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


# Valid alphas of the MobileNet ImageNet weight files (as in keras.applications).
MOBILENET_ALPHAS = {
    "MobileNet": (0.25, 0.5, 0.75, 1.0),
    "MobileNetV2": (0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
}
