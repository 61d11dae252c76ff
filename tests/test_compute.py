"""training.jit_compile: validated at parse time, resolved per backend, passed to
model.compile and to the feature cache's extractor."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tlbench.core.errors import SpecError
from tlbench.training import jit, trainer
from tlbench.training.spec import resolve_spec

BASE = {
    "dataset": {"prepared": "x"},
    "backbone": {"name": "small_cnn", "weights": "none"},
    "strategy": {"name": "scratch"},
}


def _spec(**training):
    return resolve_spec({**BASE, "training": training})


def test_setting_is_validated_and_defaults_to_auto():
    assert _spec()["training"]["jit_compile"] == "auto"
    assert _spec(jit_compile=True)["training"]["jit_compile"] is True
    with pytest.raises(SpecError, match=r"training\.jit_compile: 'yes' is not valid"):
        _spec(jit_compile="yes")


def _conv_model(layer):
    inputs = keras.Input((8, 8, 3))
    x = layer(inputs)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


def test_auto_resolves_per_backend():
    """TensorFlow: XLA for a model with a standard convolution and no depthwise one, fitted
    on enough images x epochs (benchmarks/bench_backends.py: the small CNN 1.32x faster,
    MobileNet 0.27x; compiling a tiny CNN's steps about 5.5 s); JAX always jitted; torch
    eager."""
    plain = _conv_model(keras.layers.Conv2D(4, 3))
    depthwise = _conv_model(keras.layers.DepthwiseConv2D(3))
    mixed = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), keras.layers.SeparableConv2D(4, 3)]
    )
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    big = jit.XLA_MIN_IMAGE_EPOCHS
    assert jit.jit_setting("auto", "tensorflow", plain, big) is True
    assert jit.jit_setting("auto", "tensorflow", plain, big - 1) is False  # a short fit
    assert jit.jit_setting("auto", "tensorflow", plain) is False  # a forward pass
    assert jit.jit_setting("auto", "tensorflow", depthwise, 10 * big) is False
    assert jit.jit_setting("auto", "tensorflow", mixed, 10 * big) is False
    assert jit.jit_setting("auto", "tensorflow", dense, 10 * big) is False
    assert jit.jit_setting("auto", "tensorflow") is False  # no model to look at
    assert jit.jit_setting(True, "tensorflow", depthwise) is True
    assert jit.jit_setting(False, "tensorflow", plain, big) is False
    for model in (plain, depthwise, dense, None):
        assert jit.jit_setting("auto", "jax", model) is True
        assert jit.jit_setting("auto", "torch", model, big) is False


def test_unjittable_layers_error_on_true_and_run_uncompiled_on_auto():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.RandomRotation(0.1, name="rotate")(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    with pytest.raises(ValueError, match="rotate"):
        jit.model_jit(model, True)
    assert jit.model_jit(model, "auto") is False
    assert jit.model_jit(model, False) is False


@pytest.mark.parametrize("setting", [True, False])
def test_trainer_compiles_with_the_setting(setting):
    from tlbench.strategies.base import Phase

    spec = _spec(jit_compile=setting, epochs=1, early_stopping=None)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 4)).astype("float32"), rng.integers(0, 3, 16)
    trainer.Trainer(spec).fit(model, Phase("train", 1, 0.01), (x, y), (x, y))
    assert model.jit_compile is setting
    record = jit.jit_record(spec["training"], model)
    assert record == {"setting": setting, "resolved": setting, "model": setting}


def test_trainer_passes_the_fits_work_to_auto(monkeypatch):
    """The trainer resolves ``auto`` with the fit's images x epochs: a plain CNN fitted
    on 16 images x 2 epochs is XLA-compiled on TensorFlow when the threshold is 32, not
    when it is 33 (JAX jits both)."""
    from tlbench.strategies.base import Phase

    spec = _spec(epochs=2, early_stopping=None)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 8, 8, 3)).astype("float32"), rng.integers(0, 3, 16)
    modes = []
    for threshold in (32, 33):
        monkeypatch.setattr(jit, "XLA_MIN_IMAGE_EPOCHS", threshold)
        model = _conv_model(keras.layers.Conv2D(3, 3, activation="softmax"))
        trainer.Trainer(spec).fit(model, Phase("train", 2, 0.01), (x, y), (x, y))
        modes.append(model.jit_compile)
    jax = keras.backend.backend() == "jax"
    assert modes == ([True, True] if jax else [True, False])


@pytest.mark.parametrize("setting", [True, False])
def test_feature_extractor_forward_pass_follows_the_setting(setting):
    from tlbench.models.backbones.applications import build_backbone
    from tlbench.training.feature_cache import feature_extractor

    backbone = build_backbone(
        {"name": "small_cnn", "weights": "none", "kwargs": {"widths": [4]}}, (8, 8, 3)
    )
    extractor = feature_extractor(backbone, (8, 8, 3), 8, "bilinear", setting)
    assert extractor.jit_compile is setting
