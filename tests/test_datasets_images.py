"""Image decoding: every mode to RGB uint8, lying extensions, truncated files, resizing."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tlbench.datasets import images


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _decode(data: bytes) -> np.ndarray:
    out = np.asarray(images.decode(data, "test"))
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    return out


def test_grey_l_becomes_equal_rgb():
    out = _decode(_encode(Image.new("L", (5, 4), 100), "PNG"))
    assert out.shape == (4, 5, 3)
    assert (out == 100).all()


def test_palette_p_becomes_its_colour():
    image = Image.new("P", (4, 4), 0)
    image.putpalette([10, 20, 30] + [0, 0, 0] * 255)
    assert (_decode(_encode(image, "PNG")) == [10, 20, 30]).all()


def test_rgba_is_composited_on_black():
    array = np.zeros((2, 2, 4), dtype=np.uint8)
    array[..., :3] = [200, 100, 50]
    array[0, :, 3] = 255  # opaque row
    array[1, 0, 3] = 0  # fully transparent
    array[1, 1, 3] = 128  # half
    out = _decode(_encode(Image.fromarray(array, "RGBA"), "PNG"))
    assert out[0].tolist() == [[200, 100, 50]] * 2
    assert out[1, 0].tolist() == [0, 0, 0]
    assert out[1, 1].tolist() == [100, 50, 25]


def test_la_and_transparent_palette():
    la = Image.fromarray(
        np.dstack([np.full((2, 2), 90, np.uint8), np.full((2, 2), 255, np.uint8)]), "LA"
    )
    assert (_decode(_encode(la, "PNG")) == 90).all()
    palette = Image.new("P", (2, 1), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0, 0, 0] * 254)
    palette.putpixel((0, 0), 1)
    palette.putpixel((1, 0), 0)
    out = _decode(_encode(palette, "PNG", transparency=1))
    assert out[0, 0].tolist() == [0, 0, 0]  # transparent red -> black


def test_cmyk_jpeg():
    white = _decode(_encode(Image.new("CMYK", (8, 8), (0, 0, 0, 0)), "JPEG", quality=95))
    assert white.min() >= 250
    cyan = _decode(_encode(Image.new("CMYK", (8, 8), (255, 0, 0, 0)), "TIFF"))
    assert cyan[0, 0].tolist() == [0, 255, 255]


def test_16_bit_grey_is_scaled():
    array = np.array([[0, 65535], [32896, 257]], dtype=np.uint16)
    image = Image.fromarray(array)
    assert image.mode.startswith("I;16")
    out = _decode(_encode(image, "PNG"))
    assert out[..., 0].tolist() == [[0, 255], [128, 1]]


def test_float_mode_is_clipped():
    image = Image.fromarray(np.array([[-5.0, 300.0, 42.4]], dtype=np.float32), "F")
    assert _decode(_encode(image, "TIFF"))[..., 0].tolist() == [[0, 255, 42]]


def test_gif_first_frame():
    frames = [Image.new("RGB", (6, 6), c) for c in [(255, 0, 0), (0, 255, 0)]]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).n_frames == 2
    out = _decode(data)
    assert out[0, 0].tolist() == [255, 0, 0]


def test_extension_lies_are_ignored(tmp_path):
    gif = tmp_path / "gif.jpg"
    Image.new("P", (7, 5), 3).save(gif, "GIF")
    png = tmp_path / "alpha.jpg"
    Image.new("RGBA", (7, 5), (10, 200, 30, 255)).save(png, "PNG")
    assert images.load(gif.read_bytes(), (4, 4), name=str(gif)).shape == (4, 4, 3)
    assert images.load(png.read_bytes(), (4, 4))[0, 0].tolist() == [10, 200, 30]


def test_truncated_and_garbage_raise_decode_error():
    data = _encode(
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)), "JPEG"
    )
    with pytest.raises(images.ImageDecodeError, match="trunc.jpg") as info:
        images.decode(data[: len(data) // 2], "trunc.jpg")
    assert info.value.reason
    with pytest.raises(images.ImageDecodeError, match="not a recognised image format"):
        images.decode(b"this is not an image", "notes.jpg")


def test_resize_downscale_is_antialiased_and_box_crops():
    checker = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)
    image = Image.fromarray(np.dstack([checker] * 3), "RGB")
    small = images.resize(image, (8, 8))
    assert small.shape == (8, 8, 3)
    assert abs(float(small.mean()) - 127.5) < 3 and small.std() < 3  # averaged, not aliased
    half = np.zeros((10, 20, 3), dtype=np.uint8)
    half[:, 10:] = 255
    right = images.resize(Image.fromarray(half), (4, 4), box=(0.5, 0.0, 1.0, 1.0))
    left = images.resize(Image.fromarray(half), (4, 4), box=(0.0, 0.0, 0.5, 1.0))
    # the filter reaches a little past the box edge; the rest is the box's content
    assert (right[:, 1:] == 255).all() and right.mean() > 240
    assert (left[:, :-1] == 0).all() and left.mean() < 15
    with pytest.raises(images.ImageDecodeError, match="crop box"):
        images.resize(Image.fromarray(half), (4, 4), box=(0.5, 0.0, 0.5, 1.0))


def test_normalize_size_and_resize_array():
    assert images.normalize_size(32) == (32, 32)
    assert images.normalize_size([24, 40]) == (24, 40)
    for bad in (0, -3, "32", [1, 2, 3], True, [16.5, 16]):
        with pytest.raises(ValueError, match="image_size"):
            images.normalize_size(bad)
    grey = np.full((2, 8, 8), 7, dtype=np.uint8)
    out = images.resize_array(grey, (16, 16))
    assert out.shape == (2, 16, 16, 3) and (out == 7).all()
