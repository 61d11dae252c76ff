"""training.jit_compile: validated at parse time, resolved per backend, passed to
model.compile and to the feature cache's extractor."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tlbench import compute
from tlbench.spec import SpecError, resolve_spec

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


def test_auto_resolves_per_backend():
    for backend, value in compute.AUTO_JIT.items():
        assert compute.jit_setting("auto", backend) is value
    assert compute.jit_setting(False, "jax") is False
    with pytest.raises(ValueError, match="'numpy'"):
        compute.jit_setting("auto", "numpy")


def test_unjittable_layers_error_on_true_and_run_uncompiled_on_auto():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.RandomRotation(0.1, name="rotate")(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    with pytest.raises(ValueError, match="rotate"):
        compute.model_jit(model, True)
    assert compute.model_jit(model, "auto") is False
    assert compute.model_jit(model, False) is False


@pytest.mark.parametrize("setting", [True, False])
def test_trainer_compiles_with_the_setting(setting):
    from tlbench import engine
    from tlbench.strategies import Phase

    spec = _spec(jit_compile=setting, epochs=1, early_stopping=None)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 4)).astype("float32"), rng.integers(0, 3, 16)
    engine.Trainer(spec).fit(model, Phase("train", 1, 0.01), (x, y), (x, y))
    assert model.jit_compile is setting
    record = compute.jit_record(spec["training"], model)
    assert record == {"setting": setting, "resolved": setting, "model": setting}


@pytest.mark.parametrize("setting", [True, False])
def test_feature_extractor_forward_pass_follows_the_setting(setting):
    from tlbench.backbones import build_backbone
    from tlbench.features import feature_extractor

    backbone = build_backbone(
        {"name": "small_cnn", "weights": "none", "kwargs": {"widths": [4]}}, (8, 8, 3)
    )
    extractor = feature_extractor(backbone, (8, 8, 3), 8, "bilinear", setting)
    assert extractor.jit_compile is setting
