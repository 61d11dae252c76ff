"""Checks of the package on the backend Keras runs on: tests/test_jax_backend.py runs
them all in ONE ``KERAS_BACKEND=jax`` interpreter (each would otherwise pay its own
Python, TensorFlow and JAX start, seconds each on the test machine);
tests/test_optim.py calls :func:`optimizer_ratio` in the test process (TensorFlow).

Usage: ``python tests/backend_checks.py RESULTS.json [SPEC.yaml RUN_DIR]``. Every check runs
even when another fails; RESULTS.json maps each check's name to ``{"ok": true, "value":
...}`` or ``{"ok": false, "error": traceback}``. With SPEC.yaml and RUN_DIR, ``engine_run``
runs ``tlbench run SPEC.yaml RUN_DIR`` (the command line's entry point, in this process).
"""

from __future__ import annotations

import json
import sys
import tempfile
import traceback

import keras
import numpy as np


def augment_presets() -> int:
    """Every augmentation preset: random in training, the identity at inference."""
    from tlbench.models.augment import AUGMENTATIONS, build_augmentation

    x = np.random.default_rng(0).uniform(0, 255, (8, 16, 16, 3)).astype("float32")
    for name in AUGMENTATIONS.names():
        aug = build_augmentation(name, None, (16, 16))
        train = np.asarray(aug(x, training=True))
        assert train.shape == x.shape, name
        assert np.array_equal(np.asarray(aug(x, training=False)), x), name
        if name != "none":
            assert np.abs(train - x).max() > 1.0, name
    return len(AUGMENTATIONS)


def backbones() -> None:
    """A custom CNN runs; weights from a saved run reproduce the source's features."""
    from tlbench.models.backbones.applications import build_backbone
    from tlbench.models.preprocess import Preprocess

    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    b = build_backbone({"name": "seed003_cnn", "weights": "none"}, (32, 32, 3))
    assert np.isfinite(np.asarray(b.model(Preprocess(b.preprocess_mode)(x)))).all()
    cfg = {"name": "small_cnn", "weights": "none", "kwargs": {"widths": [8]}}
    src = build_backbone(cfg, (32, 32, 3))
    inputs = keras.Input((32, 32, 3))
    y = keras.layers.GlobalAveragePooling2D()(src.model(Preprocess("unit")(inputs)))
    run = tempfile.mkdtemp()
    keras.Model(inputs, keras.layers.Dense(2)(y)).save(run + "/model.keras")
    got = build_backbone({**cfg, "weights": {"run": run}}, (32, 32, 3))
    a = np.asarray(got.model(Preprocess("unit")(x)))
    b = np.asarray(src.model(Preprocess("unit")(x)))
    assert np.allclose(a, b, atol=1e-5)


def preprocess_modes() -> None:
    """Preprocess's tf/torch/caffe modes equal keras.applications' preprocess_input."""
    from tlbench.models.preprocess import Preprocess

    x = np.random.default_rng(0).uniform(0, 255, (2, 3, 3, 3)).astype("float32")
    ref = {
        "tf": keras.applications.mobilenet_v2,
        "torch": keras.applications.densenet,
        "caffe": keras.applications.vgg16,
    }
    for mode, family in ref.items():
        got = np.asarray(Preprocess(mode)(x))
        assert np.allclose(got, family.preprocess_input(x.copy()), atol=1e-4), mode


def optimizer_ratio(optimizer: str, momentum: float) -> dict:
    """Two identical Dense layers, "b" with lr multiplier 0.1: the backend and the ratio
    of their updates after 3 epochs of 2 steps."""
    from tlbench.training.optimizers import build_optimizer

    inp = keras.Input((4,))
    a = keras.layers.Dense(1, use_bias=False, name="a", kernel_initializer="ones")(inp)
    b = keras.layers.Dense(1, use_bias=False, name="b", kernel_initializer="ones")(inp)
    model = keras.Model(inp, keras.layers.Add()([a, b]))
    opt = build_optimizer({"optimizer": optimizer, "momentum": momentum}, 0.01, {"b/kernel": 0.1})
    model.compile(optimizer=opt, loss="mse")
    x = np.random.default_rng(0).random((16, 4)).astype("float32")
    model.fit(x, np.zeros((16, 1), "float32"), epochs=3, batch_size=8, verbose=0)
    da = 1 - keras.ops.convert_to_numpy(model.get_layer("a").kernel).ravel()
    db = 1 - keras.ops.convert_to_numpy(model.get_layer("b").kernel).ravel()
    return {"backend": keras.backend.backend(), "ratio": (db / da).tolist()}


def forward_flops() -> dict:
    """XLA's count of a Dense 10 -> 5 layer's forward pass on one input."""
    from tlbench.training.cost import forward_flops as count

    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(5)])
    return count(model, (10,))


def variable_selection() -> dict[str, list[str]]:
    """bitfit and norm_only (Variable.trainable per variable, BatchNorm layers frozen): the
    backbone variables that one epoch of fit moved, per strategy."""
    from tlbench.models.backbones.applications import build_backbone
    from tlbench.strategies.base import STRATEGIES, Phase

    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 1, (16, 8, 8, 3)).astype("float32"), rng.integers(0, 2, 16)
    moved = {}
    for name in ("bitfit", "norm_only"):
        cfg = {"name": "small_cnn", "weights": "none", "kwargs": {"widths": [4]}}
        backbone = build_backbone(cfg, (8, 8, 3))
        STRATEGIES.get(name)().configure(Phase("train", 1, 0.01), backbone)
        inputs = keras.Input((8, 8, 3))
        pooled = keras.layers.GlobalAveragePooling2D()(backbone.model(inputs))
        model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(pooled))
        model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
        before = {v.path: keras.ops.convert_to_numpy(v) for v in backbone.model.weights}
        model.fit(x, y, epochs=1, batch_size=8, verbose=0)
        after = {v.path: keras.ops.convert_to_numpy(v) for v in backbone.model.weights}
        moved[name] = sorted(p for p in before if not np.array_equal(before[p], after[p]))
    return moved


def engine_run(spec: str, out: str) -> int:
    """``tlbench run SPEC OUT``: its exit status."""
    from tlbench.cli import main

    return main(["run", spec, out])


def main(argv: list[str]) -> None:
    results_path, *run = argv
    checks = {
        "backend": lambda: keras.backend.backend(),
        "augment_presets": augment_presets,
        "backbones": backbones,
        "preprocess_modes": preprocess_modes,
        "optimizer_sgd": lambda: optimizer_ratio("sgd", 0.0),
        "forward_flops": forward_flops,
        "variable_selection": variable_selection,
    }
    if run:
        checks["engine_run"] = lambda: engine_run(*run)
    results = {}
    for name, check in checks.items():
        try:
            results[name] = {"ok": True, "value": check()}
        except Exception:  # every check reports; the test names the one that failed
            results[name] = {"ok": False, "error": traceback.format_exc()}
    with open(results_path, "w") as handle:
        json.dump(results, handle)


if __name__ == "__main__":
    main(sys.argv[1:])
