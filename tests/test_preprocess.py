"""Preprocess layer: each mode equals the Keras family's preprocess_input; serialization."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tlbench.models.preprocess import LUMA_RGB, PREPROCESS_MODES, Equalize, Preprocess, Standardize


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, size=(3, 5, 7, 3)).astype("float32")


@pytest.mark.parametrize(
    ("mode", "family"),
    [
        ("tf", keras.applications.mobilenet_v2),
        ("tf", keras.applications.xception),
        ("torch", keras.applications.densenet),
        ("caffe", keras.applications.vgg16),
        ("caffe", keras.applications.resnet50),
        ("none", keras.applications.efficientnet),
    ],
)
def test_mode_matches_keras_family(mode, family, images):
    got = keras.ops.convert_to_numpy(Preprocess(mode)(images))
    expected = np.asarray(family.preprocess_input(images.copy()))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_unit_mode_scales_to_0_1(images):
    got = keras.ops.convert_to_numpy(Preprocess("unit")(images))
    np.testing.assert_allclose(got, images / 255.0, rtol=1e-6)
    assert got.min() >= 0 and got.max() <= 1


def test_caffe_mode_swaps_channels():
    x = np.zeros((1, 1, 1, 3), "float32")
    x[..., 0] = 200.0  # red
    got = keras.ops.convert_to_numpy(Preprocess("caffe")(x))[0, 0, 0]
    np.testing.assert_allclose(got, [-103.939, -116.779, 200.0 - 123.68], rtol=1e-5)


def test_uint8_input_is_cast_to_float():
    x = np.full((1, 2, 2, 3), 255, dtype="uint8")
    got = keras.ops.convert_to_numpy(Preprocess("tf")(x))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, 1.0)


def test_unknown_mode_lists_valid_modes():
    with pytest.raises(ValueError, match="'bogus'.*tf, torch, caffe, unit, none"):
        Preprocess("bogus")


@pytest.mark.parametrize("mode", PREPROCESS_MODES)
def test_saved_model_round_trip(mode, tmp_path, images):
    inputs = keras.Input(shape=images.shape[1:])
    model = keras.Model(inputs, Preprocess(mode, name="preprocess")(inputs))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_layer("preprocess").mode == mode
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0))


# On the JAX backend: tests/test_jax_backend.py::test_modes_under_jax_backend.


def test_standardize_matches_per_image_standardization():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    dark = rng.uniform(0, 0.2, (2, 32, 32, 3)).astype("float32")  # a dark, low-contrast photo
    flat = np.full((1, 32, 32, 3), 0.4, dtype="float32")  # no contrast at all
    x = np.concatenate([dark, flat])
    got = np.asarray(Standardize()(x))
    np.testing.assert_allclose(got, tf.image.per_image_standardization(x).numpy(), atol=1e-5)
    np.testing.assert_allclose(got[:2].mean(axis=(1, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(got[:2].std(axis=(1, 2, 3)), 1.0, atol=1e-4)
    np.testing.assert_array_equal(got[2], 0.0)  # finite: the floor 1/sqrt(n) applies
    # brightness and contrast are gone: a scaled and shifted image maps to the same input
    np.testing.assert_allclose(np.asarray(Standardize()(3 * dark + 0.2)), got[:2], atol=1e-4)


def test_standardize_saved_model_round_trip(tmp_path, images):
    inputs = keras.Input(shape=images.shape[1:])
    model = keras.Model(inputs, Standardize(name="standardize")(inputs))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("standardize"), Standardize)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0))


def _equalized_reference(image: np.ndarray) -> np.ndarray:
    """Luma histogram equalisation of one 0..1 RGB image in numpy (OpenCV's equalizeHist)."""
    wr, wg, wb = LUMA_RGB
    y = image @ np.array(LUMA_RGB)
    level = np.clip(np.floor(y * 256).astype(int), 0, 255)
    cdf = np.cumsum(np.bincount(level.ravel(), minlength=256))
    cdf_min = cdf[cdf > 0].min()
    y_eq = (cdf[level] - cdf_min) / (level.size - cdf_min)
    cb, cr = (image[..., 2] - y) / (2 * (1 - wb)), (image[..., 0] - y) / (2 * (1 - wr))
    r, b = y_eq + 2 * (1 - wr) * cr, y_eq + 2 * (1 - wb) * cb
    return np.clip(np.stack([r, (y_eq - wr * r - wb * b) / wg, b], axis=-1), 0, 1)


def test_equalize_spreads_each_images_luma_and_keeps_its_colour():
    rng = np.random.default_rng(0)
    dark = rng.uniform(0.02, 0.2, (2, 16, 16, 3)).astype("float32")  # dark, low contrast
    dark[1, ..., 0] += 0.1  # a reddish one
    flat = np.full((1, 16, 16, 3), 0.4, dtype="float32")  # one luma level: unchanged
    got = np.asarray(Equalize()(np.concatenate([dark, flat])))
    for i in range(2):
        np.testing.assert_allclose(got[i], _equalized_reference(dark[i]), atol=1e-5)
    y = got[:2] @ np.array(LUMA_RGB)
    assert y.min() < 0.05 and y.max() > 0.9  # spread over the whole range
    np.testing.assert_allclose(got[2], flat[0], atol=1e-6)
    # chroma kept where nothing clips: the reddish image stays redder than the other
    assert (got[1, ..., 0] - got[1, ..., 2]).mean() > (got[0, ..., 0] - got[0, ..., 2]).mean()
    # the 0..255 range
    np.testing.assert_allclose(
        np.asarray(Equalize(value_range=(0, 255))(dark * 255)), got[:2] * 255, atol=1e-3
    )


def test_equalize_rejects_bad_arguments_and_round_trips(tmp_path, images):
    with pytest.raises(ValueError, match="value_range"):
        Equalize(value_range=(1, 0))
    with pytest.raises(ValueError, match="bins must be an integer >= 2, got 1"):
        Equalize(bins=1)
    inputs = keras.Input(shape=images.shape[1:])
    model = keras.Model(inputs, Equalize(value_range=(0, 255), name="eq")(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.get_layer("eq"), Equalize)
    np.testing.assert_allclose(
        loaded.predict(images, verbose=0), model.predict(images, batch_size=3, verbose=0)
    )
