"""The input pipeline: prepared splits -> batches -> a model's input layers.

Opening a prepared dataset (:func:`load_prepared`), batching a split with seeded
per-epoch shuffling (:class:`ImageBatches`, fed to Keras by :func:`fit_input`), the
symbolic resize + preprocess in front of a backbone (:func:`input_pipeline`), the
pooling after it (:func:`pool_features`), and inference over images
(:func:`predict`). Used by the engine, the feature cache and the tuner; it imports
neither, so none of them import each other for it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from tlbench.datasets import load_prepared as _load
from tlbench.datasets.budget import ALL, subset
from tlbench.models.preprocess import Preprocess

#: The splits a pilot run (spec ``pilot: true``), a search and a feature cache open.
TRAIN_VAL_SPLITS = ("train", "val")


def load_prepared(path: str | os.PathLike, splits: Sequence[str] | None = None) -> Any:
    """Open a prepared dataset (indirection so tests can observe split access);
    ``splits``: the splits whose files must exist (None: all)."""

    return _load(path) if splits is None else _load(path, splits)


class BudgetedData:
    """A prepared dataset whose train split is a label budget's subset (tlbench.datasets.budget);
    every other split and attribute is the dataset's own."""

    def __init__(self, data: Any, indices: np.ndarray):
        self._data = data
        self.train_indices = indices

    def __getattr__(self, name: str) -> Any:
        return getattr(self._data, name)

    def split(self, name: str, mmap: bool = True) -> tuple[np.ndarray, np.ndarray]:
        x, y = self._data.split(name, mmap)
        if name != "train":
            return x, y
        return np.asarray(x[self.train_indices]), np.asarray(y[self.train_indices])


def apply_budget(data: Any, budget: Any, seed: int) -> tuple[Any, dict[str, Any]]:
    """``(data, record)``: the dataset with its train split cut to label budget ``budget``
    (None or ``"all"``: unchanged), drawn with the run's ``seed`` (so the seeds of a
    cell train on different draws of images, each nested across budgets), and the
    budget's record for metrics.json (:func:`tlbench.datasets.budget.subset`)."""

    labels = data.split("train")[1]
    whole = budget is None or budget == ALL
    indices, record = subset(labels, ALL if whole else budget, seed, data.classes)
    return (data if whole else BudgetedData(data, indices)), record


def fill_input_size(training: dict[str, Any], data: Any) -> None:
    """Set ``training["input_size"]`` when it is None (spec ``null``): the side of the
    prepared images ``data`` (their height; ``data.image_size`` is ``(height, width)``)."""
    if training["input_size"] is None:
        size = data.image_size
        training["input_size"] = int(size[0] if isinstance(size, Sequence) else size)


class ImageBatches(keras.utils.PyDataset):
    """Batches of a prepared split: uint8 memmap -> float32 per batch, seeded shuffling.

    With ``shuffle`` the order is a permutation drawn from ``(seed, epoch)``,
    redrawn after every epoch. ``labels=False`` yields images only (predict).
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray | None,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.shuffle, self.seed = shuffle, int(seed)
        self.epoch = 0
        self.order = self._order()

    def _order(self) -> np.ndarray:
        n = len(self.x)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, self.epoch]).permutation(n)

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def batch_indices(self, index: int) -> np.ndarray:
        """The image indices of batch ``index`` in the current epoch."""
        idx = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        if self.shuffle:
            idx = np.sort(idx)  # sequential reads from the memmap; batch content unchanged
        return idx

    def epoch_indices(self) -> np.ndarray:
        """The image indices of the current epoch, batch after batch (int64)."""
        return np.concatenate([self.batch_indices(i) for i in range(len(self))]).astype(np.int64)

    def __getitem__(self, index: int):
        idx = self.batch_indices(index)
        xb = np.asarray(self.x[idx], dtype=np.float32)
        if self.y is None:
            return (xb,)
        return xb, np.asarray(self.y[idx], dtype=np.int64)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()


#: Largest split (bytes of its uint8 images) that :func:`fit_input` copies into a
#: TensorFlow tensor; larger ones are read batch by batch through the PyDataset.
TF_PIPELINE_MAX_BYTES = 4 * 2**30


def fit_input(batches: ImageBatches) -> Any:
    """What ``model.fit`` / ``predict`` read for ``batches``: the same batches, in the
    same order, as fast as the backend allows.

    On TensorFlow, Keras reads a PyDataset through ``tf.data.Dataset.from_generator``,
    one Python call per batch; on 2 cores that halved training throughput of the
    small CNN here (benchmarks/bench_throughput.py). There the split is copied into
    a uint8 tensor and each batch gathered in-graph; the epoch's order is asked of
    ``batches`` (:meth:`ImageBatches.epoch_indices`) when the epoch's iterator starts,
    so :class:`EpochAdvance` must call ``batches.on_epoch_end`` after every epoch,
    as Keras does for a PyDataset. Other backends, and splits over
    :data:`TF_PIPELINE_MAX_BYTES`, get ``batches`` itself.
    """
    if not isinstance(batches, ImageBatches):
        return batches
    x = batches.x
    if keras.backend.backend() != "tensorflow" or x.nbytes > TF_PIPELINE_MAX_BYTES:
        return batches
    # deferred: TensorFlow only on the TensorFlow backend
    import tensorflow as tf

    images = tf.constant(np.asarray(x))
    labels = None if batches.y is None else tf.constant(np.asarray(batches.y, np.int64))
    n = len(x)

    def indices(_):
        idx = tf.numpy_function(batches.epoch_indices, [], tf.int64, stateful=True)
        return tf.ensure_shape(idx, (n,))

    def gather(idx):
        xb = tf.cast(tf.gather(images, idx), tf.float32)
        return (xb,) if labels is None else (xb, tf.gather(labels, idx))

    ds = tf.data.Dataset.from_tensors(np.int64(0)).map(indices).unbatch()
    return ds.batch(batches.batch_size).map(gather).prefetch(2)


def input_pipeline(x: Any, input_size: int, interpolation: str, preprocess_mode: str) -> Any:
    """Resizing (when the image is not input_size²) and Preprocess, on symbolic ``x``."""
    if tuple(x.shape[1:3]) != (input_size, input_size):
        x = keras.layers.Resizing(
            input_size, input_size, interpolation=interpolation, name="resize"
        )(x)
    return Preprocess(preprocess_mode, name="preprocess")(x)


def pool_features(x: Any) -> Any:
    """Global average pooling of 4D feature maps; 2D features pass unchanged."""
    if isinstance(x, list | tuple):  # a functional model built with outputs=[...]
        if len(x) != 1:
            raise ValueError(f"the backbone has {len(x)} outputs; expected one feature tensor")
        x = x[0]
    if len(x.shape) == 4:
        return keras.layers.GlobalAveragePooling2D(name="gap", dtype="float32")(x)
    if len(x.shape) != 2:
        raise ValueError(f"backbone output of shape {tuple(x.shape)} is neither 4D nor 2D")
    return x


def predict(model: keras.Model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """``model``'s predictions for images ``x`` (uint8 N×H×W×3) through :func:`fit_input`,
    float64."""
    return np.asarray(
        model.predict(fit_input(ImageBatches(x, None, batch_size)), verbose=0), np.float64
    )
