"""The engine's training input: ImageBatches and its TensorFlow pipeline (fit_input)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tlbench.models import inputs as model_inputs
from tlbench.training import callbacks

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="fit_input's pipeline is TensorFlow's"
)


def _batches(shuffle: bool = True, labels: bool = True) -> model_inputs.ImageBatches:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (23, 4, 4, 3), dtype=np.uint8)
    y = rng.integers(0, 5, 23) if labels else None
    return model_inputs.ImageBatches(x, y, 5, shuffle=shuffle, seed=7)


def _as_numpy(ds) -> list[tuple[np.ndarray, ...]]:
    return [tuple(np.asarray(t) for t in batch) for batch in ds]


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("labels", [True, False])
def test_pipeline_yields_the_pydatasets_batches_epoch_after_epoch(shuffle, labels):
    reference, batches = _batches(shuffle, labels), _batches(shuffle, labels)
    ds = model_inputs.fit_input(batches)
    assert ds is not batches
    for _ in range(3):  # each epoch: a fresh iterator, as model.fit makes one per epoch
        got = _as_numpy(ds)
        want = [reference[i] for i in range(len(reference))]
        assert len(got) == len(want) == 5
        for g, w in zip(got, want, strict=True):
            assert len(g) == len(w)
            for a, b in zip(g, w, strict=True):
                assert a.dtype == b.dtype
                np.testing.assert_array_equal(a, b)
        reference.on_epoch_end()
        batches.on_epoch_end()
    if shuffle:  # the order changes between epochs
        assert not np.array_equal(_batches().epoch_indices(), reference.epoch_indices())


def test_resumed_epoch_order_is_read_when_the_epoch_starts():
    batches, reference = _batches(), _batches()
    ds = model_inputs.fit_input(batches)
    batches.epoch = reference.epoch = 4  # as Trainer.fit sets it on resume
    batches.order, reference.order = batches._order(), reference._order()
    np.testing.assert_array_equal(
        np.concatenate([b[0] for b in _as_numpy(ds)]), reference.x[reference.epoch_indices()]
    )


def test_fit_reads_each_epochs_batches_in_order():
    """Through model.fit with EpochAdvance, the model gets the PyDataset's batches."""
    batches = _batches()
    seen: list[np.ndarray] = []

    class Record(keras.layers.Layer):
        def call(self, x, training=None):
            if training:
                seen.append(keras.ops.convert_to_numpy(x))
            return x

    inputs = keras.Input((4, 4, 3))
    flat = keras.layers.Flatten()(Record()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(5)(flat))
    model.compile(
        "sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True), run_eagerly=True
    )
    model.fit(
        model_inputs.fit_input(batches),
        epochs=3,
        shuffle=False,
        verbose=0,
        callbacks=[callbacks.EpochAdvance(batches)],
    )
    assert batches.epoch == 3
    reference, want = _batches(), []
    for _ in range(3):
        want += [reference[i][0] for i in range(len(reference))]
        reference.on_epoch_end()
    assert len(seen) == len(want) == 15
    for got, expected in zip(seen, want, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_other_inputs_and_large_splits_pass_through(monkeypatch):
    arrays = (np.zeros((2, 3)), np.zeros(2))
    assert model_inputs.fit_input(arrays) is arrays
    batches = _batches()
    monkeypatch.setattr(model_inputs, "TF_PIPELINE_MAX_BYTES", batches.x.nbytes - 1)
    assert model_inputs.fit_input(batches) is batches


def test_fill_input_size_takes_the_image_height_only_when_unset():
    class Data:
        image_size = (12, 20)

    training = {"input_size": None}
    model_inputs.fill_input_size(training, Data())
    assert training == {"input_size": 12}
    training = {"input_size": 32}
    model_inputs.fill_input_size(training, Data())
    assert training == {"input_size": 32}
