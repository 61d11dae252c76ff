"""Where two paths stand to each other: an output folder must stay apart from the data
it is made of (:func:`check_apart`)."""

from __future__ import annotations

import os
from pathlib import Path


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(Path(path).expanduser()))


def relation(path: str | os.PathLike, other: str | os.PathLike) -> str | None:
    """``"equal to"``, ``"inside"`` or ``"containing"`` when ``path`` (links resolved) is
    that of ``other``; ``None`` when they are apart."""
    a, b = _real(path), _real(other)
    if a == b:
        return "equal to"
    if b in a.parents:
        return "inside"
    if a in b.parents:
        return "containing"
    return None


def check_apart(path: str | os.PathLike, what: str, other: str | os.PathLike, whose: str) -> None:
    """Raise ``ValueError`` naming both paths when ``path`` is equal to, inside or
    containing ``other`` (``what`` / ``whose`` say what each is)."""
    found = relation(path, other)
    if found is not None:
        raise ValueError(
            f"{what} {path} is {found} {whose} {other} (resolved: {_real(path)} and "
            f"{_real(other)}); refusing: the output would overwrite or mix with the data. "
            "Nothing was deleted: choose an output folder apart from the source"
        )
