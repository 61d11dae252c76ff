"""Backbones: registry, keras.applications families, custom CNNs, weights, blocks, checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import require_shared

from tlbench.core.errors import MissingWeightsError, UnknownNameError
from tlbench.models.backbones import base, keras_weights
from tlbench.models.backbones.applications import (
    build_backbone,
    build_source_classifier,
    family_preprocess_mode,
    keras_applications,
)
from tlbench.models.backbones.base import BACKBONES, layer_blocks
from tlbench.models.backbones.keras_weights import imagenet_classes
from tlbench.models.preprocess import Preprocess

MNV2 = {"name": "MobileNetV2", "weights": "imagenet", "kwargs": {"alpha": 0.35}}
MNV1 = {"name": "MobileNet", "weights": "imagenet", "kwargs": {"alpha": 0.25}}
MNV2_NO_TOP = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"


def _images(size: int, n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def _features(backbone, raw: np.ndarray) -> np.ndarray:
    x = Preprocess(backbone.preprocess_mode)(raw)
    return keras.ops.convert_to_numpy(backbone.model(x, training=False))


def _offline(monkeypatch):
    """Make any Keras download attempt fail as it does without network."""

    def refuse(fname, origin, file_hash):
        raise OSError(f"offline (test): no download of {origin}")

    monkeypatch.setattr(keras_weights, "_download_weights", refuse)


# --- registry and discovery -------------------------------------------------


def test_all_keras_applications_are_registered():
    apps = set(keras_applications())
    assert {"MobileNet", "MobileNetV2", "EfficientNetB0", "NASNetMobile", "VGG16"} <= apps
    assert {"ResNet50", "Xception", "DenseNet121", "ConvNeXtTiny"} <= apps
    assert apps <= set(BACKBONES.names())
    assert {"seed003_cnn", "seed000_cnn", "alexnet", "small_cnn"} <= set(BACKBONES.names())


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("MobileNet", "tf"),
        ("MobileNetV2", "tf"),
        ("NASNetMobile", "tf"),
        ("Xception", "tf"),
        ("InceptionV3", "tf"),
        ("ResNet50V2", "tf"),
        ("ResNet50", "caffe"),
        ("VGG16", "caffe"),
        ("DenseNet121", "torch"),
        ("EfficientNetB0", "none"),
        ("ConvNeXtTiny", "none"),
        ("MobileNetV3Small", "none"),
    ],
)
def test_family_preprocess_modes(name, mode):
    assert family_preprocess_mode(name) == mode


@pytest.mark.parametrize(("name", "mode"), [("ConvNeXtTiny", "torch"), ("MobileNetV3Small", "tf")])
def test_include_preprocessing_false_needs_external_preprocessing(name, mode):
    cfg = {"name": name, "weights": "none", "kwargs": {"include_preprocessing": False}}
    b = build_backbone(cfg, (32, 32, 3))
    assert b.preprocess_mode == mode
    assert not any(isinstance(layer, keras.layers.Rescaling) for layer in b.model.layers)


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownNameError, match="'MobileNetV9'.*MobileNetV2.*seed003_cnn"):
        build_backbone({"name": "MobileNetV9", "weights": "none"}, (32, 32, 3))


# --- keras.applications families (random init, small inputs) ----------------

FAMILIES = [
    ("MobileNet", 32, {"alpha": 0.25}, "block_13"),
    ("MobileNetV2", 32, {"alpha": 0.35}, "block_16"),
    ("VGG16", 32, {}, "block5"),
    ("ResNet50", 32, {}, "conv5_block3"),
    ("EfficientNetB0", 32, {}, "block7a"),
    pytest.param("DenseNet121", 32, {}, "conv5_block16", marks=pytest.mark.slow),
    pytest.param("NASNetMobile", 32, {}, "cell_11", marks=pytest.mark.slow),
    ("Xception", 71, {}, "block14"),
]


@pytest.mark.parametrize(("name", "size", "kwargs", "block"), FAMILIES)
def test_family_builds_with_meaningful_blocks(name, size, kwargs, block):
    b = build_backbone({"name": name, "weights": "none", "kwargs": kwargs}, (size, size, 3))
    assert b.name == name and b.model.name == "backbone" and not b.pretrained
    assert b.min_size == size
    assert b.model.input_shape == (None, size, size, 3)
    assert len(b.model.output_shape) == 4  # include_top=False: a feature map
    assert block in dict(b.blocks)
    _check_blocks(b.model, b.blocks)
    feats = _features(b, _images(size))
    assert np.isfinite(feats).all()


def _check_blocks(model, blocks):
    """Blocks: non-empty, unique names, cover every non-input layer once, in order,
    and every block holds weights."""
    assert blocks
    names = [n for _, layer_names in blocks for n in layer_names]
    layers = [
        layer.name for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)
    ]
    assert names == layers
    assert len({name for name, _ in blocks}) == len(blocks)
    for block_name, layer_names in blocks:
        assert layer_names, block_name
        assert any(model.get_layer(n).weights for n in layer_names), block_name


def test_kwargs_pass_through_and_pooling_gives_vector():
    b = build_backbone(
        {"name": "MobileNetV2", "weights": "none", "kwargs": {"alpha": 0.5, "pooling": "avg"}},
        (32, 32, 3),
    )
    assert b.model.output_shape == (None, 1280)
    first_conv = b.model.get_layer("Conv1")
    assert first_conv.filters == 16  # 32 * alpha 0.5


def test_unknown_kwargs_list_valid_ones():
    with pytest.raises(ValueError, match=r"\['alpah'\].*MobileNetV2.*valid kwargs: alpha"):
        build_backbone(
            {"name": "MobileNetV2", "weights": "none", "kwargs": {"alpah": 1}}, (32,) * 2 + (3,)
        )
    with pytest.raises(ValueError, match=r"\['include_top'\]"):
        build_backbone(
            {"name": "VGG16", "weights": "none", "kwargs": {"include_top": True}}, (32, 32, 3)
        )
    with pytest.raises(
        ValueError,
        match=r"valid kwargs: convs_per_block, dense_units, dropout, equalize, standardize, widths",
    ):
        build_backbone(
            {"name": "small_cnn", "weights": "none", "kwargs": {"depth": 3}}, (32, 32, 3)
        )


# --- config and input checks -------------------------------------------------


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match=r"unknown backbone config key\(s\) \['weight'\]"):
        build_backbone({"name": "small_cnn", "weight": "none"}, (32, 32, 3))
    with pytest.raises(ValueError, match="needs 'weights': imagenet, none"):
        build_backbone({"name": "small_cnn"}, (32, 32, 3))
    missing = tmp_path / "nope.weights.h5"
    with pytest.raises(FileNotFoundError, match="nope.weights.h5.*does not exist"):
        build_backbone({"name": "small_cnn", "weights": str(missing)}, (32, 32, 3))
    with pytest.raises(ValueError, match="invalid backbone weights"):
        build_backbone({"name": "small_cnn", "weights": {"from": "x"}}, (32, 32, 3))
    with pytest.raises(ValueError, match="input_shape must be"):
        build_backbone({"name": "small_cnn", "weights": "none"}, (32, 32))


@pytest.mark.parametrize(
    ("cfg", "shape", "pattern"),
    [
        ({"name": "VGG16", "weights": "none"}, (16, 16, 3), r"VGG16.*16x16.*at least 32"),
        ({"name": "ResNet50", "weights": "none"}, (31, 64, 3), r"ResNet50.*31x64.*at least 32"),
        ({"name": "MobileNet", "weights": "none"}, (24, 24, 3), r"MobileNet .*24x24.*at least 32"),
        ({"name": "Xception", "weights": "none"}, (64, 64, 3), r"Xception.*64x64.*at least 71"),
        ({"name": "alexnet", "weights": "none"}, (32, 32, 3), r"alexnet.*32x32.*at least 63"),
        (
            {"name": "NASNetMobile", "weights": "imagenet"},
            (160, 160, 3),
            r"NASNetMobile.*exactly 224x224.*got 160x160",
        ),
    ],
)
def test_invalid_sizes(cfg, shape, pattern):
    with pytest.raises(ValueError, match=pattern):
        build_backbone(cfg, shape)


def test_custom_backbone_has_no_imagenet_weights():
    with pytest.raises(ValueError, match="alexnet has no ImageNet weights; valid weights"):
        build_backbone({"name": "alexnet", "weights": "imagenet"}, (224, 224, 3))


# --- custom CNNs ----------------------------------------------------------------


def _params(model, cls):
    return [layer.count_params() for layer in model.layers if isinstance(layer, cls)]


def test_seed003_cnn_matches_seed_layer_table():
    b = build_backbone({"name": "seed003_cnn", "weights": "none"}, (224, 224, 3))
    # seeds 003/004 layer table (Oxford-IIIT Pet, 224x224)
    assert _params(b.model, keras.layers.Conv2D) == [9472, 73856, 147584, 295168, 590080]
    assert _params(b.model, keras.layers.BatchNormalization) == [256, 512, 512, 1024, 1024]
    assert b.model.get_layer("block1_conv1").output.shape[1:] == (112, 112, 64)
    assert b.model.get_layer("block1_pool").output.shape[1:] == (56, 56, 64)
    assert b.model.get_layer("block2_pool").output.shape[1:] == (28, 28, 128)
    assert b.model.output_shape == (None, 14, 14, 256)
    # table total 1,128,997 includes the 37-way Dense head (9,509)
    assert b.model.count_params() == 1_128_997 - 9_509
    assert [name for name, _ in b.blocks] == ["block1", "block2", "block3"]
    assert b.preprocess_mode == "unit"
    _check_blocks(b.model, b.blocks)
    # seed 004's autoencoder tables: first conv at stride 1
    b1 = build_backbone(
        {"name": "seed003_cnn", "weights": "none", "kwargs": {"first_stride": 1}}, (64, 64, 3)
    )
    assert b1.model.get_layer("block1_conv1").output.shape[1:] == (64, 64, 64)


def test_seed000_cnn_is_cnn_10_relu():
    b = build_backbone({"name": "seed000_cnn", "weights": "none"}, (32, 32, 3))
    convs = [layer for layer in b.model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [6, 12, 24, 48]
    assert all(c.kernel_size == (3, 3) and c.activation.__name__ == "relu" for c in convs)
    assert _params(b.model, keras.layers.Conv2D) == [168, 660, 2616, 10416]
    assert b.model.get_layer("block4_pool").output.shape[1:] == (8, 8, 48)
    assert b.model.output_shape == (None, 1024)
    assert _params(b.model, keras.layers.Dense) == [8 * 8 * 48 * 1024 + 1024]
    assert [name for name, _ in b.blocks] == ["block1", "block2", "block3", "block4", "block5"]
    _check_blocks(b.model, b.blocks)
    fmap = build_backbone(
        {"name": "seed000_cnn", "weights": "none", "kwargs": {"dense_units": 0}}, (32, 32, 3)
    )
    assert fmap.model.output_shape == (None, 8, 8, 48)


def test_alexnet_features_match_torchvision_layout():
    b = build_backbone({"name": "alexnet", "weights": "none"}, (224, 224, 3))
    assert b.model.output_shape == (None, 6, 6, 256)  # 9216 features, as in seed 002
    assert b.model.count_params() == 2_469_696  # torchvision alexnet.features
    assert b.preprocess_mode == "torch" and b.min_size == 63
    assert [name for name, _ in b.blocks] == [f"block{i}" for i in range(1, 6)]
    small = build_backbone({"name": "alexnet", "weights": "none"}, (63, 63, 3))
    assert small.model.output_shape == (None, 1, 1, 256)


def test_small_cnn_widths():
    b = build_backbone(
        {
            "name": "small_cnn",
            "weights": "none",
            "kwargs": {"widths": [8, 16], "convs_per_block": 1},
        },
        (32, 32, 3),
    )
    assert b.model.output_shape == (None, 8, 8, 16)
    assert [name for name, _ in b.blocks] == ["block1", "block2"]
    assert b.min_size == 4
    _check_blocks(b.model, b.blocks)
    with pytest.raises(ValueError, match="at least 8"):
        build_backbone(
            {"name": "small_cnn", "weights": "none", "kwargs": {"widths": [4, 4, 4]}}, (4, 4, 3)
        )


def test_small_cnn_standardize_and_dropout():
    cfg = {"name": "small_cnn", "weights": "none", "kwargs": {"widths": [8, 16]}}
    plain = build_backbone(cfg, (16, 16, 3))
    assert not any(
        "standardize" in layer.name or "dropout" in layer.name for layer in plain.model.layers
    )
    cfg["kwargs"].update(standardize=True, dropout=0.25)
    b = build_backbone(cfg, (16, 16, 3))
    names = [layer.name for layer in b.model.layers]
    assert names[1] == "block0_standardize"
    assert [b.model.get_layer(f"block{i}_dropout").rate for i in (1, 2)] == [0.25, 0.25]
    assert b.model.output_shape == plain.model.output_shape == (None, 4, 4, 16)
    assert [name for name, _ in b.blocks] == ["block1", "block2"]
    _check_blocks(b.model, b.blocks)
    # standardised: the features of an image do not change with its brightness or contrast
    x = np.random.default_rng(0).uniform(0, 0.3, (2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(
        b.model.predict(x, verbose=0), b.model.predict(2 * x + 0.1, verbose=0), atol=1e-4
    )
    with pytest.raises(ValueError, match="dropout"):
        build_backbone({**cfg, "kwargs": {"dropout": 1.0}}, (16, 16, 3))
    dense = build_backbone({**cfg, "kwargs": {"widths": [8, 16], "dense_units": 32}}, (16, 16, 3))
    assert dense.model.output_shape == (None, 32)
    assert dense.model.get_layer("block3_dense").input.shape[-1] == 4 * 4 * 16  # flattened map
    assert [name for name, _ in dense.blocks] == ["block1", "block2", "block3"]
    with pytest.raises(ValueError, match="standardize must be true or false, got 'yes'"):
        build_backbone({**cfg, "kwargs": {"standardize": "yes"}}, (16, 16, 3))


def test_small_cnn_equalize_comes_first_and_removes_global_contrast():
    cfg = {"name": "small_cnn", "weights": "none", "kwargs": {"widths": [8, 16], "equalize": True}}
    b = build_backbone(cfg, (16, 16, 3))
    assert [layer.name for layer in b.model.layers][1] == "block0_equalize"
    assert b.model.output_shape == (None, 4, 4, 16)
    _check_blocks(b.model, b.blocks)
    # a darker, lower-contrast copy of a grey image has the same luma ranks: same features
    x = np.random.default_rng(0).uniform(0.2, 0.8, (2, 16, 16, 1)).astype("float32")
    x = np.repeat(np.round(x * 255) / 255, 3, axis=-1)
    np.testing.assert_allclose(
        b.model.predict(x, verbose=0), b.model.predict(0.25 * x, verbose=0), atol=0.05
    )
    with pytest.raises(ValueError, match="equalize must be true or false, got 1"):
        build_backbone({**cfg, "kwargs": {"equalize": 1}}, (16, 16, 3))


def test_layer_blocks_fallback_one_block_per_weighted_layer():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="first")(inputs)
    x = keras.layers.Activation("relu", name="act")(x)
    x = keras.layers.Conv2D(4, 3, name="second")(x)
    x = keras.layers.Flatten(name="flat")(x)
    model = keras.Model(inputs, x)
    assert layer_blocks(model) == [("first", ["first", "act"]), ("second", ["second", "flat"])]


# --- weights from a file and from an earlier run -----------------------------------


def test_weights_from_file(tmp_path):
    cfg = {"name": "small_cnn", "weights": "none", "kwargs": {"widths": [8, 16]}}
    source = build_backbone(cfg, (16, 16, 3))
    path = tmp_path / "backbone.weights.h5"
    source.model.save_weights(path)
    loaded = build_backbone({**cfg, "weights": str(path)}, (16, 16, 3))
    assert loaded.pretrained
    x = _images(16)
    np.testing.assert_allclose(_features(loaded, x), _features(source, x), rtol=1e-5, atol=1e-5)


def _same_weights(a, b) -> bool:
    wa, wb = a.model.get_weights(), b.model.get_weights()
    return len(wa) == len(wb) and all(np.array_equal(x, y) for x, y in zip(wa, wb, strict=True))


@pytest.mark.parametrize(
    "cfg",
    [
        {"name": "small_cnn", "kwargs": {"widths": [4, 8]}},
        {"name": "MobileNet", "kwargs": {"alpha": 0.25}},  # a keras.applications builder
    ],
)
def test_random_weights_come_from_their_seed_alone(cfg):
    """{random: SEED}: bit-identical for one SEED whatever the run's seed, other for another
    SEED; not pretrained; the caller's random streams continue as if nothing was built."""
    import random

    from keras.src.utils.rng_utils import get_random_seed

    def build(seed, run_seed):
        keras.utils.set_random_seed(run_seed)
        return build_backbone({**cfg, "weights": {"random": seed}}, (32, 32, 3))

    first = build(0, run_seed=1)
    assert not first.pretrained
    assert _same_weights(first, build(0, run_seed=2))
    assert not _same_weights(first, build(1, run_seed=1))
    # after the build, the run's streams are where the run's seed left them
    keras.utils.set_random_seed(5)
    expected = (random.random(), float(np.random.rand()), keras.initializers.GlorotUniform().seed)
    build(0, run_seed=5)
    got = (random.random(), float(np.random.rand()), keras.initializers.GlorotUniform().seed)
    assert got == expected and get_random_seed() == 5


@pytest.mark.parametrize("seed", [-1, "x", 1.5, True, 2**32])
def test_bad_random_seed_is_named(seed):
    with pytest.raises(ValueError, match=f"{seed!r} is not a valid random-init seed"):
        build_backbone({"name": "small_cnn", "weights": {"random": seed}}, (32, 32, 3))


def _save_run(run_dir: Path, backbone, classes=None, size=16) -> keras.Model:
    """An engine-like run folder: model.keras with a nested 'backbone', metrics.json."""
    inputs = keras.Input((size, size, 3), name="image")
    x = Preprocess(backbone.preprocess_mode, name="preprocess")(inputs)
    x = backbone.model(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="classifier")(x)
    model = keras.Model(inputs, outputs, name="classifier_model")
    run_dir.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / "model.keras")
    if classes is not None:
        (run_dir / "metrics.json").write_text(json.dumps({"status": "ok", "classes": classes}))
    return model


def test_weights_from_run_round_trip(tmp_path):
    cfg = {"name": "small_cnn", "weights": "none", "kwargs": {"widths": [8, 16]}}
    source = build_backbone(cfg, (16, 16, 3))
    _save_run(tmp_path / "run", source, ["a", "b", "c"])
    loaded = build_backbone({**cfg, "weights": {"run": str(tmp_path / "run")}}, (16, 16, 3))
    assert loaded.pretrained and loaded.model.name == "backbone"
    x = _images(16)
    np.testing.assert_allclose(_features(loaded, x), _features(source, x), rtol=1e-5, atol=1e-5)
    fresh = build_backbone(cfg, (16, 16, 3))
    assert not np.allclose(_features(fresh, x), _features(source, x))
    # conv weights do not depend on the input size
    bigger = build_backbone({**cfg, "weights": {"run": str(tmp_path / "run")}}, (32, 32, 3))
    assert bigger.model.output_shape == (None, 8, 8, 16)


def test_weights_from_run_errors(tmp_path):
    cfg = {"name": "small_cnn", "weights": "none", "kwargs": {"widths": [8, 16]}}
    _save_run(tmp_path / "run", build_backbone(cfg, (16, 16, 3)))
    other = {
        "name": "small_cnn",
        "weights": {"run": str(tmp_path / "run")},
        "kwargs": {"widths": [8, 32]},
    }
    with pytest.raises(ValueError, match="shape .* but the configured backbone"):
        build_backbone(other, (16, 16, 3))
    with pytest.raises(FileNotFoundError, match="model.keras does not exist"):
        build_backbone({**cfg, "weights": {"run": str(tmp_path / "missing")}}, (16, 16, 3))
    inputs = keras.Input((16, 16, 3))
    plain = keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))
    (tmp_path / "plain").mkdir()
    plain.save(tmp_path / "plain" / "model.keras")
    with pytest.raises(ValueError, match="no nested layer named 'backbone'; its layers: .*dense"):
        build_backbone({**cfg, "weights": {"run": str(tmp_path / "plain")}}, (16, 16, 3))


def test_source_classifier_from_run(tmp_path):
    cfg = {"name": "small_cnn", "weights": "none", "kwargs": {"widths": [8, 16]}}
    model = _save_run(tmp_path / "run", build_backbone(cfg, (16, 16, 3)), ["ant", "bee", "wasp"])
    source_cfg = {**cfg, "weights": {"run": str(tmp_path / "run")}}
    loaded, classes = build_source_classifier(source_cfg, (16, 16, 3))
    assert classes == ["ant", "bee", "wasp"]
    x = _images(16)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    # images of another size are resized to the run's, as the ImageNet classifier's are
    bigger, _ = build_source_classifier(source_cfg, (32, 32, 3))
    x32 = _images(32)
    np.testing.assert_allclose(
        bigger.predict(x32, verbose=0),
        model.predict(keras.layers.Resizing(16, 16)(x32), verbose=0),
        atol=1e-5,
    )
    with pytest.raises(ValueError, match=r"inputs of shape \(16, 16, 3\).*takes 3 channels, not 1"):
        build_source_classifier(source_cfg, (16, 16, 1))
    (tmp_path / "run" / "metrics.json").unlink()
    with pytest.raises(FileNotFoundError, match="no class names"):
        build_source_classifier(source_cfg, (16, 16, 3))
    (tmp_path / "run" / "classes.json").write_text('["x", "y", "z"]')
    assert build_source_classifier(source_cfg, (16, 16, 3))[1] == ["x", "y", "z"]


def test_source_classifier_needs_trained_source():
    with pytest.raises(ValueError, match="direct strategy needs a trained source model"):
        build_source_classifier({"name": "MobileNetV2", "weights": "none"}, (32, 32, 3))
    with pytest.raises(ValueError, match="small_cnn.*no ImageNet classifier"):
        build_source_classifier({"name": "small_cnn", "weights": "imagenet"}, (32, 32, 3))


# --- real ImageNet weights (../shared/keras) -------------------------------------


@pytest.mark.shared
@pytest.mark.parametrize("cfg", [MNV2, MNV1], ids=["MobileNetV2-0.35", "MobileNet-0.25"])
def test_real_imagenet_weights_at_224_and_128(cfg, keras_home, monkeypatch):
    _offline(monkeypatch)
    at224 = build_backbone(cfg, (224, 224, 3))
    at128 = build_backbone(cfg, (128, 128, 3))
    random = build_backbone({**cfg, "weights": "none"}, (128, 128, 3))
    assert at224.pretrained and at128.pretrained and not random.pretrained
    # no-top weights are input-size independent: the 224 file is used at 128
    for w224, w128 in zip(at224.model.weights, at128.model.weights, strict=True):
        np.testing.assert_array_equal(w224.numpy(), w128.numpy())
    x = _images(128, seed=1)
    real, rand = _features(at128, x), _features(random, x)
    assert real.shape == rand.shape == (2, 4, 4, at128.model.output_shape[-1])
    assert not np.allclose(real, rand, atol=1e-3)


@pytest.mark.shared
def test_imagenet_class_names(keras_home, monkeypatch):
    _offline(monkeypatch)
    classes = imagenet_classes()
    assert len(classes) == 1000 and classes[0] == "tench" and classes[1] == "goldfish"


@pytest.mark.parametrize("size", [224, 128])
def test_missing_imagenet_weights_name_the_file(size, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    _offline(monkeypatch)
    with pytest.raises(MissingWeightsError) as err:
        build_backbone(MNV2, (size, size, 3))
    message = str(err.value)
    assert repr(MNV2_NO_TOP) in message
    assert str(tmp_path / "models") in message
    assert "never falls back to random weights" in message


def test_missing_weights_of_other_families_name_their_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    _offline(monkeypatch)
    with pytest.raises(MissingWeightsError, match=r"'efficientnetb0_notop.h5' in .*models"):
        build_backbone({"name": "EfficientNetB0", "weights": "imagenet"}, (32, 32, 3))


def test_imagenet_source_classifier(tmp_path, monkeypatch):
    """Preprocess + include_top model, resized to its ImageNet size; a stand-in top file
    (random weights saved under Keras's expected name) proves the file is what is loaded."""
    index = require_shared("keras", "models", "imagenet_class_index.json")
    (tmp_path / "models").mkdir()
    os.symlink(index, tmp_path / "models" / "imagenet_class_index.json")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    _offline(monkeypatch)
    with pytest.raises(MissingWeightsError, match="0.35_224.h5"):
        build_source_classifier(MNV2, (96, 96, 3))
    reference = keras.applications.MobileNetV2(alpha=0.35, include_top=True, weights=None)
    reference.save(
        tmp_path / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224.h5"
    )
    model, classes = build_source_classifier(MNV2, (96, 96, 3))
    assert len(classes) == 1000
    assert model.input_shape == (None, 96, 96, 3) and model.output_shape == (None, 1000)
    assert model.get_layer("preprocess").mode == "tf"
    assert model.get_layer("resize_to_source").get_config()["height"] == 224
    x = _images(96)
    resized = keras.ops.image.resize(x, (224, 224))
    expected = reference.predict(Preprocess("tf")(resized), verbose=0)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-5)


# On the JAX backend: tests/test_jax_backend.py::test_backbones_work_with_jax_backend.


@pytest.mark.parametrize("name", ["small_cnn", "seed003_cnn"])
def test_custom_cnn_batchnorm_tracks_small_studies(name):
    """Moving statistics must follow the data within the few steps of a small study."""
    from tlbench.models.backbones.custom import BN_MOMENTUM

    backbone = build_backbone({"name": name, "weights": "none"}, (64, 64, 3))
    bns = [la for la in backbone.model.layers if isinstance(la, keras.layers.BatchNormalization)]
    assert bns and all(bn.momentum == BN_MOMENTUM == 0.9 for bn in bns)


def test_a_registered_builder_that_skips_the_size_check_is_still_checked(monkeypatch):
    def unchecked(name, weights, kwargs, input_shape):
        inputs = keras.Input(shape=input_shape)
        model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs), name="backbone")
        return base.Backbone(name, model, "unit", False, [], min_size=16)

    monkeypatch.setitem(base.BACKBONES._items, "unchecked_toy", unchecked)
    assert build_backbone({"name": "unchecked_toy", "weights": "none"}, (16, 16, 3)).min_size == 16
    with pytest.raises(ValueError, match=r"unchecked_toy .* 8x8: .* at least 16 px"):
        build_backbone({"name": "unchecked_toy", "weights": "none"}, (8, 8, 3))
