"""Decode any image file to RGB uint8 and resize it to the prepared size.

Decoding trusts the file's content, never its name: Pillow identifies the
format from the bytes, so a GIF or an RGBA PNG named ``.jpg`` (as in
Oxford-IIIT Pet) decodes like any other file.

Mode policy (every result is ``H x W x 3`` uint8 RGB):

* ``RGB``: unchanged; ``L``, ``1``, ``CMYK``, ``YCbCr`` and the like: Pillow's
  ``convert("RGB")``.
* Alpha (``RGBA``, ``LA``, ``PA``, ``P`` with a transparent colour, ...): the
  image is **composited on black** (``rgb * alpha / 255``), so colours hidden
  under fully transparent pixels never leak into the data.
* 16-bit and 32-bit integer greyscale (``I;16*``, ``I``): values are read as
  16-bit intensities and scaled by ``255 / 65535``; float (``F``): clipped to
  ``0..255``.
* Animated GIF/PNG/WebP: the first frame.
* EXIF orientation is applied (a photo taken upright stays upright).

Resizing uses Pillow's bicubic filter. When downscaling, Pillow widens the
filter support by the scale factor, so the result is antialiased (every source
pixel contributes, as with area averaging), not aliased like a point-sampled
bicubic; upscaling (e.g. 8x8 digits to 32x32) is plain bicubic interpolation.
The aspect ratio is not kept: the whole image (or the crop box) is stretched
to the target size, as Keras' ``image_dataset_from_directory`` does by default.

A file that cannot be decoded (unknown format, truncated data, decompression
bomb) raises :class:`ImageDecodeError`; ``prepare()`` records it as skipped.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: File extensions treated as images by folder-style loaders (lower case).
#: (``.jfif`` and ``.jpe`` are JPEG files; decoding reads the format from the bytes.)
IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".bmp",
        ".gif",
        ".ppm",
        ".pgm",
        ".pbm",
        ".tif",
        ".tiff",
        ".webp",
    }
)

Size = tuple[int, int]
Box = tuple[float, float, float, float]


class ImageDecodeError(ValueError):
    """An image file that cannot be decoded; ``.name`` is the file, ``.reason`` says why."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


def normalize_size(image_size: int | Sequence[int]) -> Size:
    """Return ``(height, width)`` from an int (square) or a pair; reject bad values."""
    if isinstance(image_size, bool):
        raise ValueError(f"image_size must be an int or [height, width], got {image_size!r}")
    if isinstance(image_size, int | np.integer):
        size = (int(image_size), int(image_size))
    elif (
        isinstance(image_size, Sequence)
        and not isinstance(image_size, str)
        and len(image_size) == 2
    ):
        size = (int(image_size[0]), int(image_size[1]))
        if any(float(v) != int(v) for v in image_size):
            raise ValueError(f"image_size must hold integers, got {image_size!r}")
    else:
        raise ValueError(f"image_size must be an int or [height, width], got {image_size!r}")
    if min(size) < 1:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    return size


def is_image_name(name: str) -> bool:
    """True when ``name`` has an image extension (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert a decoded Pillow image of any mode to 8-bit RGB (see module policy)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image.convert("I"), dtype=np.float64)
        grey = np.clip(np.rint(values * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "F":
        grey = np.clip(np.rint(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    has_alpha = mode in {"RGBA", "LA", "PA", "RGBa", "La"} or (
        mode in {"P", "L", "RGB"} and "transparency" in image.info
    )
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint16)
        rgb = (rgba[..., :3] * rgba[..., 3:4] + 127) // 255
        return Image.fromarray(rgb.astype(np.uint8), "RGB")
    return image.convert("RGB")


def decode(data: bytes, name: str = "<bytes>") -> Image.Image:
    """Decode ``data`` (any format Pillow reads) into a fully loaded RGB image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.seek(0)  # first frame of an animation
            image.load()  # raises on truncated data (LOAD_TRUNCATED_IMAGES stays False)
            image = ImageOps.exif_transpose(image) or image
            return to_rgb(image)
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(name, "not a recognised image format") from exc
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(name, f"{type(exc).__name__}: {exc}") from exc
    except Image.DecompressionBombWarning as exc:
        raise ImageDecodeError(name, f"too many pixels ({exc})") from exc


def resize(
    image: Image.Image, size: Size, box: Box | None = None, name: str = "<image>"
) -> np.ndarray:
    """Resize ``image`` (RGB) to ``size`` = (height, width); return uint8 ``H x W x 3``.

    ``box`` is an optional crop region ``(x1, y1, x2, y2)`` given as fractions of
    the image width/height (sub-pixel precise: Pillow resamples from it directly).
    """
    height, width = size
    pixel_box = None
    if box is not None:
        w, h = image.size
        pixel_box = (box[0] * w, box[1] * h, box[2] * w, box[3] * h)
        if not (0 <= pixel_box[0] < pixel_box[2] <= w and 0 <= pixel_box[1] < pixel_box[3] <= h):
            raise ImageDecodeError(name, f"crop box {box} is empty or outside the image")
    if image.size != (width, height) or pixel_box is not None:
        image = image.resize((width, height), Image.Resampling.BICUBIC, box=pixel_box)
    return np.asarray(image, dtype=np.uint8)


def load(data: bytes, size: Size, box: Box | None = None, name: str = "<bytes>") -> np.ndarray:
    """Decode ``data`` and resize it to ``size``; raise :class:`ImageDecodeError` if unreadable."""
    return resize(decode(data, name), size, box, name)


def resize_array(images: np.ndarray, size: Size) -> np.ndarray:
    """Resize a uint8 batch ``N x h x w x 3`` (or ``N x h x w`` grey) to ``N x H x W x 3``."""
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {images.dtype}")
    if images.ndim == 3:
        images = np.repeat(images[..., None], 3, axis=-1)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected N x H x W x 3 images, got shape {images.shape}")
    if images.shape[1:3] == tuple(size):
        return images
    out = np.empty((len(images), size[0], size[1], 3), dtype=np.uint8)
    for i, array in enumerate(images):
        out[i] = resize(Image.fromarray(array, "RGB"), size)
    return out
