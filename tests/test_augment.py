"""Augmentation presets: random in training, identity at inference, shapes and ranges kept."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tlbench.core.errors import UnknownNameError
from tlbench.models.augment import (
    AUGMENTATIONS,
    ClippedGaussianNoise,
    RandomBrightnessScale,
    RandomRescaleCrop,
    build_augmentation,
    preset_defaults,
)

SIZE = (24, 20)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    # smooth-ish random images in 0..255, 16 of them (flip changes at least one)
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, size=(16, *SIZE, 3)).astype("float32")


def _run(aug, x, training):
    return keras.ops.convert_to_numpy(aug(x, training=training))


def test_all_presets_registered():
    expected = {
        "none",
        "flip",
        "rotation",
        "zoom",
        "translation",
        "brightness",
        "contrast",
        "random_crop",
        "noise",
        "seed001",
        "seed003",
    }
    assert expected <= set(AUGMENTATIONS.names())


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_preset_train_random_inference_identity(name, images):
    keras.utils.set_random_seed(1)
    aug = build_augmentation(name, None, SIZE)
    assert isinstance(aug, keras.Sequential) and aug.name == "augmentation"
    train = _run(aug, images, True)
    infer = _run(aug, images, False)
    assert train.shape == images.shape and train.dtype == np.float32
    np.testing.assert_array_equal(infer, images)
    if name == "none":
        np.testing.assert_array_equal(train, images)
    else:
        assert np.abs(train - images).max() > 1.0, f"{name} did not change training outputs"
    assert train.min() >= -1e-3 and train.max() <= 255.0 + 1e-3, f"{name} left 0..255"


def test_params_override_defaults(images):
    aug = build_augmentation("flip", {"mode": "vertical"}, SIZE)
    assert aug.get_layer("flip").mode == "vertical"
    aug = build_augmentation("rotation", {"factor": 0.0}, SIZE)
    np.testing.assert_allclose(_run(aug, images, True), images, atol=1e-3)
    assert preset_defaults("rotation") == {"factor": 0.1, "fill_mode": "reflect"}


def test_unknown_params_list_valid_ones():
    with pytest.raises(ValueError, match=r"\['strength'\].*'brightness'.*valid params: factor"):
        build_augmentation("brightness", {"strength": 2}, SIZE)
    with pytest.raises(ValueError, match=r"valid params: \(none\)"):
        build_augmentation("none", {"factor": 1}, SIZE)


def test_unknown_preset_lists_valid_names():
    with pytest.raises(UnknownNameError, match="'mixup'.*flip.*seed001"):
        build_augmentation("mixup", None, SIZE)


def test_seed001_mapping():
    aug = build_augmentation("seed001", None, (224, 224))
    names = [layer.name for layer in aug.layers]
    assert names == ["contrast", "brightness", "noise", "random_crop", "rotation"]
    # Keras 3 draws a single float's contrast factor from [1, 1 + 1] = [1, 2]: the seed's
    # factor 2 is the upper end
    assert aug.get_layer("contrast").get_config()["factor"] == pytest.approx((0.0, 1.0))
    assert aug.get_layer("brightness").get_config()["factor"] == pytest.approx((-0.3, 0.3))
    assert aug.get_layer("brightness").get_config()["value_range"] == pytest.approx((0, 255))
    assert aug.get_layer("noise").stddev == pytest.approx(0.6)
    crop = aug.get_layer("random_crop")
    assert crop.scale == pytest.approx(235 / 224) and crop._size == (235, 235)
    assert aug.get_layer("rotation").get_config()["factor"] == pytest.approx((-0.02, 0.02))


def test_seed003_mapping():
    aug = build_augmentation("seed003", None, SIZE)
    assert [layer.name for layer in aug.layers] == ["rotation", "zoom", "brightness_scale", "flip"]
    scale = aug.get_layer("brightness_scale")
    assert (scale.lower, scale.upper) == (0.7, 1.3)
    assert aug.get_layer("rotation").get_config()["factor"] == pytest.approx((-10 / 360, 10 / 360))
    assert aug.get_layer("zoom").get_config()["height_factor"] == pytest.approx(0.1)
    assert aug.get_layer("flip").mode == "horizontal"


def test_brightness_scale_multiplies_and_clips():
    x = np.array([[[[10.0, 100.0, 200.0]]]], "float32")
    out = keras.ops.convert_to_numpy(RandomBrightnessScale(2.0, 2.0)(x, training=True))
    np.testing.assert_allclose(out, [[[[20.0, 200.0, 255.0]]]])
    many = np.full((64, 1, 1, 3), 100.0, "float32")
    out = keras.ops.convert_to_numpy(RandomBrightnessScale(0.7, 1.3)(many, training=True))
    assert 70.0 - 1e-3 <= out.min() and out.max() <= 130.0 + 1e-3
    assert len(np.unique(out[:, 0, 0, 0])) > 10  # one factor per image
    with pytest.raises(ValueError, match="lower <= upper"):
        RandomBrightnessScale(1.3, 0.7)


def test_rescale_crop_is_a_crop_of_the_upscaled_image():
    x = np.arange(8 * 8, dtype="float32").reshape(1, 8, 8, 1).repeat(3, axis=-1)
    layer = RandomRescaleCrop(2.0, interpolation="nearest")
    out = keras.ops.convert_to_numpy(layer(x, training=True))
    assert out.shape == x.shape
    up = keras.ops.convert_to_numpy(keras.ops.image.resize(x, (16, 16), interpolation="nearest"))
    windows = [up[:, i : i + 8, j : j + 8] for i in range(9) for j in range(9)]
    assert any(np.array_equal(out, w) for w in windows)
    with pytest.raises(ValueError, match="scale must be >= 1"):
        RandomRescaleCrop(0.5)


def test_noise_stddev_in_pixel_units():
    x = np.full((1, 64, 64, 3), 128.0, "float32")
    out = keras.ops.convert_to_numpy(ClippedGaussianNoise(5.0)(x, training=True))
    assert 4.0 < float(np.std(out - x)) < 6.0


@pytest.mark.parametrize(("name", "params"), [("seed001", {"crop_scale": 1.2}), ("seed003", {})])
def test_augmentation_survives_save_and_load(name, params, tmp_path, images):
    inputs = keras.Input(shape=(*SIZE, 3))
    model = keras.Model(inputs, build_augmentation(name, params, SIZE)(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), images)
    restored = loaded.get_layer("augmentation")
    assert [layer.name for layer in restored.layers] == [
        layer.name for layer in model.get_layer("augmentation").layers
    ]
    assert np.abs(_run(restored, images, True) - images).max() > 1.0
    if name == "seed001":
        assert restored.get_layer("random_crop").scale == pytest.approx(1.2)


# On the JAX backend: tests/test_jax_backend.py::test_presets_work_with_jax_backend.


def test_geometric_has_no_flip():
    """Signs and digits: a mirrored image can be another class, so no RandomFlip."""
    aug = build_augmentation("geometric", {"rotation_degrees": 15}, SIZE)
    assert [layer.name for layer in aug.layers] == ["rotation", "zoom", "translation"]
    assert aug.get_layer("rotation").get_config()["factor"] == pytest.approx((-15 / 360, 15 / 360))
    assert aug.get_layer("translation").get_config()["width_factor"] == pytest.approx(0.1)


def test_geometric_photometric_jitter_is_opt_in():
    """brightness / contrast add the photometric layers after the geometric ones."""
    aug = build_augmentation("geometric", {"brightness": 0.15, "contrast": 0.3}, SIZE)
    assert [layer.name for layer in aug.layers] == [
        "rotation",
        "zoom",
        "translation",
        "brightness",
        "contrast",
    ]
    assert aug.get_layer("contrast").get_config()["factor"] == pytest.approx((0.3, 0.3))
    images = np.full((4, *SIZE, 3), 128.0, dtype="float32")
    out = keras.ops.convert_to_numpy(aug(images, training=True))
    assert out.min() >= 0.0 and out.max() <= 255.0
    assert not np.allclose(out, images)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(aug(images, training=False)), images)
    with pytest.raises(ValueError, match="brightness -0.1"):
        build_augmentation("geometric", {"brightness": -0.1}, SIZE)


def test_contrast_preset_lowers_and_raises_contrast():
    """The documented range [1 - f, 1 + f]: Keras alone would only raise contrast."""
    rng = np.random.default_rng(0)
    images = rng.uniform(60, 190, (400, *SIZE, 3)).astype("float32")
    aug = build_augmentation("contrast", {"factor": 0.3}, SIZE)
    out = keras.ops.convert_to_numpy(aug(images, training=True))
    ratio = out.std(axis=(1, 2, 3)) / images.std(axis=(1, 2, 3))
    assert ratio.min() < 0.8 and ratio.max() > 1.2
    assert ratio.min() > 0.69 and ratio.max() < 1.31
