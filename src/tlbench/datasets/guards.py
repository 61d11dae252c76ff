"""The limits of a prepare: room in memory and on disk for the arrays (:func:`check_room`),
the budget of skipped files (:class:`SkipBudget`) and why a file was skipped
(:func:`skip_reason`)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tlbench.datasets import images
from tlbench.datasets.archives import UnreadableFileError


class TooManySkippedError(ValueError):
    """More undecodable images than ``max_skipped_fraction`` allows."""


class SkipBudget:
    """Counts skipped images and fails as soon as the allowed fraction is exceeded."""

    def __init__(self, total: int, max_fraction: float, skipped: list[dict[str, str]]):
        if not 0.0 <= float(max_fraction) <= 1.0:
            raise ValueError(f"max_skipped_fraction must be in [0, 1], got {max_fraction!r}")
        self.total = max(total, 1)
        self.max_fraction = float(max_fraction)
        self.skipped = skipped

    def add(self, record: dict[str, str]) -> None:
        self.skipped.append(record)
        self.check()

    def check(self) -> None:
        count = len(self.skipped)
        fraction = count / self.total
        if fraction > self.max_fraction:
            examples = "; ".join(f"{r['file']}: {r['reason']}" for r in self.skipped[:3])
            raise TooManySkippedError(
                f"{count} of {self.total} images ({fraction:.2%}) could not be used, above "
                f"max_skipped_fraction={self.max_fraction}; first: {examples}"
            )


def skip_reason(exc: Exception) -> str:
    """Why a file was skipped: a decode error's or a guard's own reason, ``cannot read: ...``
    for an OS error (a dangling symlink), else the exception's type and message (an EXIF
    ``struct.error``, a zip member's bad CRC, an encrypted member's ``RuntimeError``)."""
    if isinstance(exc, images.ImageDecodeError | UnreadableFileError):
        return exc.reason
    if isinstance(exc, OSError):
        return f"cannot read: {exc.strerror or type(exc).__name__}"
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    return f"{name}: {exc}"


def _available_memory() -> int | None:
    """Bytes of memory available now (``MemAvailable`` of /proc/meminfo), None if unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.3g} GB"


#: Decoding holds about this many copies of one image (decoded, converted, resized).
_DECODE_COPIES = 4


def check_room(size: images.Size, count: int, where: Path) -> None:
    """Fail early, naming ``image_size``, when ``count`` images of ``size`` cannot fit:
    one image's decoding in the available memory, or the arrays on ``where``'s disk."""
    per_image = size[0] * size[1] * 3
    what = f"image_size {size[0]}x{size[1]}"
    memory = _available_memory()
    if memory is not None and _DECODE_COPIES * per_image > memory:
        raise ValueError(
            f"{what}: decoding one image at this size needs about "
            f"{_gb(_DECODE_COPIES * per_image)} of memory, {_gb(memory)} is available; "
            "choose a smaller --image-size"
        )
    free = shutil.disk_usage(where).free
    if per_image * count > free:
        raise ValueError(
            f"{what}: the prepared arrays of {count} image(s) need {_gb(per_image * count)}, "
            f"{_gb(free)} is free on {where}; choose a smaller --image-size or free disk space"
        )
