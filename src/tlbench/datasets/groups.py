"""Images that come in groups (frames of one track, photos of one patient): a group id
from a file name (:func:`group_of`, the folder loader's ``groups`` pattern) and carving a
split by whole groups (:func:`carve`).
"""

from __future__ import annotations

import re
from typing import Any

from tlbench.datasets.base import SplitData
from tlbench.datasets.splits import grouped_split, stratified_split


def group_of(pattern: str, name: str) -> str:
    """The group id of the file ``name``: its base name searched with ``pattern``, the
    first capture group (or the whole match). No match is an error naming the file."""
    base = name.rsplit("/", 1)[-1]
    match = re.search(pattern, base)
    if match is None:
        raise ValueError(f"image {name!r} does not match the groups pattern {pattern!r}")
    return match.group(1) if match.re.groups else match.group(0)


def valid_regex(value: Any) -> str | None:
    """An :class:`tlbench.datasets.base.Option` ``valid`` check: a regular expression."""
    try:
        re.compile(value)
    except re.error as exc:
        return f"is not a regular expression ({exc})"
    return None


def carve(
    pool: SplitData, fraction: float, seed: int, what: str, classes: list[str]
) -> tuple[SplitData, SplitData]:
    """``(rest, carved)``: ``fraction`` of each class carved from ``pool`` (seeded), in
    whole groups when the pool has group ids."""
    if pool.groups is None:
        keep, carved = stratified_split(pool.labels, fraction, seed, what=what,
                                        class_names=classes)  # fmt: skip
    else:
        keep, carved = grouped_split(pool.labels, pool.groups, fraction, seed, what=what,
                                     class_names=classes)  # fmt: skip
    return pool.subset(keep), pool.subset(carved)
