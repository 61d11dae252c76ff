"""Seeded, stratified splits of labelled items.

* :func:`stratified_split`: carve a fraction of every class (at least one item of
  each class with two or more items; every class keeps at least one).
* :func:`grouped_split`: the same, counted in groups (e.g. GTSRB tracks: the
  ~30 frames of one physical sign), so that no group straddles the two parts.
* :func:`take_per_class`: a fixed number of items per class (low-data regimes).

All functions return sorted index arrays and are deterministic given ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _check_fraction(fraction: float, what: str = "fraction") -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise ValueError(f"{what} must be a number in (0, 1), got {fraction!r}")
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"{what} must be in (0, 1), got {fraction!r}")
    return float(fraction)


def _carve_count(n: int, fraction: float) -> int:
    """Number of units to carve from ``n`` (>= 2): round(fraction * n) within [1, n - 1]."""
    return int(min(max(round(fraction * n), 1), n - 1))


def stratified_split(
    labels: Sequence[int] | np.ndarray,
    fraction: float,
    seed: int,
    *,
    what: str = "validation",
    class_names: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into ``(keep, carved)`` with ``fraction`` of every class in ``carved``.

    Every class needs at least two items (one on each side); otherwise an error
    names the class.
    """
    fraction = _check_fraction(fraction, f"{what} fraction")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    carved: list[np.ndarray] = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        if len(idx) < 2:
            name = class_names[cls] if class_names is not None else int(cls)
            raise ValueError(
                f"class {name!r} has {len(idx)} item(s); cannot carve a {what} split "
                "that keeps at least one item on each side"
            )
        carved.append(rng.permutation(idx)[: _carve_count(len(idx), fraction)])
    carved_idx = np.sort(np.concatenate(carved)) if carved else np.array([], dtype=np.int64)
    keep = np.setdiff1d(np.arange(len(labels)), carved_idx)
    return keep, carved_idx


def grouped_split(
    labels: Sequence[int] | np.ndarray,
    groups: Sequence[str] | np.ndarray,
    fraction: float,
    seed: int,
    *,
    what: str = "validation",
    class_names: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into ``(keep, carved)`` by whole groups, ``fraction`` of each class's groups.

    Every group must hold a single class (an error names a mixed group) and every
    class needs at least two groups.
    """
    fraction = _check_fraction(fraction, f"{what} fraction")
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    if len(groups) != len(labels):
        raise ValueError(f"{len(groups)} groups for {len(labels)} labels")
    group_ids, inverse = np.unique(groups, return_inverse=True)
    group_label = np.full(len(group_ids), -1, dtype=np.int64)
    for g, lab in zip(inverse, labels, strict=True):
        if group_label[g] not in (-1, lab):
            raise ValueError(f"group {str(group_ids[g])!r} holds more than one class")
        group_label[g] = lab
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for cls in np.unique(labels):
        cls_groups = np.flatnonzero(group_label == cls)
        if len(cls_groups) < 2:
            name = class_names[cls] if class_names is not None else int(cls)
            raise ValueError(
                f"class {name!r} has {len(cls_groups)} group(s); cannot carve a grouped "
                f"{what} split that keeps at least one group on each side"
            )
        chosen.append(rng.permutation(cls_groups)[: _carve_count(len(cls_groups), fraction)])
    carved_mask = np.isin(inverse, np.concatenate(chosen))
    return np.flatnonzero(~carved_mask), np.flatnonzero(carved_mask)


def take_per_class(
    labels: Sequence[int] | np.ndarray,
    per_class: int,
    seed: int,
    *,
    what: str = "train",
    class_names: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(taken, rest)``: ``per_class`` seeded random items of every class, and the rest.

    A class with no more than ``per_class`` items is an error (nothing would be left).
    """
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"{what}_per_class must be a positive integer, got {per_class!r}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    taken: list[np.ndarray] = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        if len(idx) <= per_class:
            name = class_names[cls] if class_names is not None else int(cls)
            raise ValueError(
                f"class {name!r} has {len(idx)} items; {what}_per_class={per_class} "
                "would leave none for the other splits"
            )
        taken.append(rng.permutation(idx)[:per_class])
    taken_idx = np.sort(np.concatenate(taken))
    return taken_idx, np.setdiff1d(np.arange(len(labels)), taken_idx)
