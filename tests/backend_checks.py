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


def l2_sp_penalty() -> dict:
    """``l2_sp``'s penalty on a small CNN and head moved off their start (BatchNorm frozen):
    its value and alpha/2 * sum((w - w0)^2) over the trainable backbone variables plus
    beta/2 * sum(w^2) over the head's, in numpy."""
    from tlbench.models.backbones.applications import build_backbone
    from tlbench.strategies.base import freeze_batchnorm
    from tlbench.strategies.l2_sp import StartingPointPenalty

    cfg = {"name": "small_cnn", "weights": "none", "kwargs": {"widths": [4, 8]}}
    backbone = build_backbone(cfg, (16, 16, 3)).model
    inputs = keras.Input((8,))
    head = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    alpha, beta = 0.3, 0.05
    penalty = StartingPointPenalty(backbone, head, alpha, beta)
    freeze_batchnorm(backbone)
    rng = np.random.default_rng(0)
    start = [keras.ops.convert_to_numpy(v) for v in backbone.weights]
    for v in backbone.weights + head.weights:
        v.assign(keras.ops.convert_to_numpy(v) + rng.normal(0, 0.1, v.shape).astype("float32"))
    trains = {id(v) for v in backbone.trainable_variables}
    expected = alpha / 2 * sum(
        np.sum((keras.ops.convert_to_numpy(v).astype(np.float64) - w0) ** 2)
        for v, w0 in zip(backbone.weights, start, strict=True)
        if id(v) in trains
    ) + beta / 2 * sum(
        np.sum(keras.ops.convert_to_numpy(v).astype(np.float64) ** 2) for v in head.weights
    )
    frozen = len(backbone.weights) - len(trains)
    return {"value": float(penalty()), "expected": float(expected), "frozen": frozen}


def bss_penalty() -> list:
    """``bss``'s penalty on random batches, as N, D, k, its value and numpy's (the k
    smallest squared of the min(N, D) singular values), with fewer images than features
    (few-shot), more, as many, and k beyond min(N, D)."""
    from tlbench.strategies.bss import spectral_shrinkage

    rng = np.random.default_rng(1)
    out = []
    for n, d, k in ((5, 32, 1), (5, 32, 3), (40, 12, 1), (40, 12, 4), (16, 16, 2), (3, 8, 5)):
        f = rng.normal(0, 1, (n, d)).astype("float32") * rng.uniform(0.1, 3, d).astype("float32")
        s = np.linalg.svd(f.astype(np.float64), compute_uv=False)
        assert len(s) == min(n, d)
        expected = float(np.sum(np.sort(s)[:k] ** 2))
        out.append([n, d, k, float(spectral_shrinkage(f, k)), expected])
    return out


def penalised_fits() -> dict:
    """The penalties through Keras's fit (:func:`tlbench.strategies.penalised.penalised_model`):
    a Dense "backbone" (12 features) and head trained 20 epochs by SGD on random data in
    batches of 8 images (fewer than features), from the same start, with no penalty,
    with ``l2_sp``'s (alpha 10, beta 0) and with ``bss``'s (eta 1, k 1): the backbone
    kernel's distance from its start, and the mean over batches of the smallest squared
    singular value of the features."""
    from tlbench.strategies.bss import spectral_shrinkage
    from tlbench.strategies.l2_sp import StartingPointPenalty
    from tlbench.strategies.penalised import penalised_model

    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (64, 20)).astype("float32")
    y = rng.integers(0, 3, 64)
    out = {}
    for kind in ("none", "l2_sp", "bss"):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((20,))
        features = keras.Model(inputs, keras.layers.Dense(12, name="f")(inputs))
        head_in = keras.Input((12,))
        head = keras.Model(head_in, keras.layers.Dense(3, activation="softmax")(head_in))
        start = keras.ops.convert_to_numpy(features.weights[0])
        if kind == "l2_sp":
            penalty = StartingPointPenalty(features, head, 10.0, 0.0)
        elif kind == "bss":
            penalty = lambda f: spectral_shrinkage(f, 1)  # noqa: E731
        else:
            penalty = lambda f: keras.ops.zeros(())  # noqa: E731
        model = penalised_model(features, head, penalty)
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=8, epochs=20, shuffle=False, verbose=0)
        f = np.asarray(features.predict(x, verbose=0), np.float64)
        smallest = [
            np.linalg.svd(f[i : i + 8], compute_uv=False).min() ** 2 for i in range(0, 64, 8)
        ]
        out[kind] = {
            "distance": float(
                np.linalg.norm(keras.ops.convert_to_numpy(features.weights[0]) - start)
            ),
            "smallest": float(np.mean(smallest)),
        }
    return out


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
        "l2_sp_penalty": l2_sp_penalty,
        "bss_penalty": bss_penalty,
        "penalised_fits": penalised_fits,
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
