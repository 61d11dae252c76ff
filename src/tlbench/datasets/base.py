"""Types shared by the dataset loaders and the DATASETS registry.

A loader is one registered function ``loader(options, workdir, seed, image_size)
-> RawSplits``: it finds the source files (``options`` already holds every
option with its default), decides the train/val/test membership and returns
either references to encoded image files (:class:`ImageRef`, decoded and
resized by ``prepare()``) or arrays it generated itself. ``workdir`` is a
temporary folder removed after ``prepare()``; ``image_size`` is
``(height, width)``, used by generators that render at the target size.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tlbench.core import hashing
from tlbench.core.errors import number_hint
from tlbench.core.registry import Registry
from tlbench.datasets import archives
from tlbench.datasets.images import Box, Size
from tlbench.datasets.splits import stratified_split

SPLITS = ("train", "val", "test")

LoaderFn = Callable[[dict[str, Any], Path, int, Size], "RawSplits"]

DATASETS: Registry[LoaderFn] = Registry("dataset loader")


class OptionError(ValueError):
    """A bad dataset option; ``key`` is the option's name (None: the config as a whole)."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


def fraction(value: Any) -> str | None:
    """An :class:`Option` ``valid`` check: a fraction in (0, 1)."""
    return None if 0.0 < float(value) < 1.0 else "must be in (0, 1)"


def positive(value: Any) -> str | None:
    """An :class:`Option` ``valid`` check: >= 1."""
    return None if value >= 1 else "must be >= 1"


@dataclass(frozen=True)
class Option:
    """A loader option: its default, the types a configured value may have, and
    optionally ``valid(value) -> problem | None`` (the loader's own value check,
    run by :func:`resolve_options` for ``prepare()`` and the study alike)."""

    default: Any
    types: tuple[type, ...]
    doc: str = ""
    valid: Callable[[Any], str | None] | None = None

    def check(self, loader: str, key: str, value: Any) -> Any:
        """Return ``value`` if it has an allowed type and value, else raise naming the key."""
        if value is None and self.default is None:
            return value
        ok = isinstance(value, self.types) and not (
            isinstance(value, bool) and bool not in self.types
        )
        if not ok:
            names = " or ".join(t.__name__ for t in self.types)
            raise OptionError(
                f"dataset option {key!r} of loader {loader!r} must be {names}, "
                f"got {value!r}{number_hint(value)}",
                key,
            )
        problem = self.valid(value) if self.valid is not None else None
        if problem:
            raise OptionError(
                f"{key} {problem}, got {value!r} (dataset option of loader {loader!r})", key
            )
        return value


#: Options every loader accepts (handled by ``prepare()`` or the fetch helper).
COMMON_OPTIONS: dict[str, Option] = {
    "source": Option(None, (str, os.PathLike), "mirror folder/file; null = official URLs"),
    "max_skipped_fraction": Option(
        0.01,
        (float, int),
        "max fraction of undecodable images",
        lambda v: None if 0 <= v <= 1 else "must be in [0, 1]",
    ),
    "cache_dir": Option(None, (str, os.PathLike), "download cache (default ~/.cache/tlbench)"),
    "sha256": Option(None, (dict,), "expected sha256 per source file name"),
    "max_file_mb": Option(
        100, (float, int), "larger image files are skipped (MB)", lambda v: _above_zero(v)
    ),
    "max_archive_mb": Option(
        50_000,
        (float, int),
        "an archive expanding to more is refused (MB)",
        lambda v: _above_zero(v),
    ),
    "max_compression_ratio": Option(
        100,
        (float, int),
        "an archive expanding to more than this many times its size is refused (zip bomb)",
        lambda v: _above_zero(v),
    ),
    "duplicates": Option(
        "warn",
        (str,),
        "copies across splits/classes: warn | error | drop (drop val/test copies of train)",
        lambda v: None if v in ("warn", "error", "drop") else "must be warn, error or drop",
    ),
    "near_distance": Option(
        0,
        (int,),
        "near-duplicates: perceptual hashes at most this many bits apart",
        lambda v: None if 0 <= v <= 64 else "must be in 0..64",
    ),
}


def _above_zero(value: Any) -> str | None:
    return None if value > 0 else "must be > 0"


def archive_limits(options: dict[str, Any]) -> archives.Limits:
    """The file-size cap and the zip-bomb guard of a loader's ``options``."""
    return archives.Limits(
        max_file_mb=options["max_file_mb"],
        max_archive_mb=options["max_archive_mb"],
        max_compression_ratio=options["max_compression_ratio"],
    )


def register(
    name: str,
    *,
    class_count: Callable[[dict[str, Any]], int | None] | None = None,
    **options: Option,
) -> Callable[[LoaderFn], LoaderFn]:
    """Register a loader under ``name`` with its own ``options`` (name -> :class:`Option`).
    ``class_count(options)``: how many classes it prepares, where the options tell
    without reading the data (:func:`class_count`)."""

    def decorator(fn: LoaderFn) -> LoaderFn:
        clash = set(options) & (set(COMMON_OPTIONS) | {"loader"})
        if clash:
            raise ValueError(f"loader {name!r} redefines common options {sorted(clash)}")
        fn.options = options  # type: ignore[attr-defined]
        fn.class_count = class_count  # type: ignore[attr-defined]
        return DATASETS.register(name)(fn)

    return decorator


def class_count(config: dict[str, Any]) -> int | None:
    """The number of classes a dataset config prepares, where known before preparing it
    (e.g. ``hymenoptera``: 2, ``synthetic``: its ``num_classes``); None otherwise
    (a ``folder``: its class folders)."""
    name, options = resolve_options(config)
    count = getattr(DATASETS.get(name), "class_count", None)
    return None if count is None else count(options)


def loader_options(name: str) -> dict[str, Option]:
    """All options (common + loader-specific) of loader ``name``."""
    fn = DATASETS.get(name)
    return {**COMMON_OPTIONS, **getattr(fn, "options", {})}


def resolve_options(config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Validate a dataset config; return ``(loader name, options with defaults)``.

    A missing/unknown loader or an unknown key is an error listing the valid ones.
    """
    if not isinstance(config, dict):
        raise ValueError(f"a dataset config must be a mapping, got {config!r}")
    if "loader" not in config:
        raise ValueError(
            "dataset config has no 'loader'; valid loaders: " + ", ".join(DATASETS.names())
        )
    name = config["loader"]
    if not isinstance(name, str):
        raise ValueError(
            f"dataset loader must be a name, got {name!r}; valid loaders: "
            + ", ".join(DATASETS.names())
        )
    valid = loader_options(name)
    unknown = sorted(set(config) - set(valid) - {"loader"})
    if unknown:
        raise OptionError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for dataset loader {name!r}; "
            f"valid options: {', '.join(sorted(valid))}",
            unknown[0],
        )
    options = {key: opt.default for key, opt in valid.items()}
    for key, value in config.items():
        if key != "loader":
            options[key] = valid[key].check(name, key, value)
    return name, options


@dataclass
class ImageRef:
    """An encoded image to decode: a display ``name``, a ``read()`` giving its bytes,
    and an optional crop ``box`` (x1, y1, x2, y2) in fractions of the image size."""

    name: str
    read: Callable[[], bytes]
    box: Box | None = None


@dataclass
class SplitData:
    """One split: ``labels`` (int64) and either ``refs`` (files) or ``images`` (uint8 NHWC);
    optionally ``groups``: a group id (str) per image where images are not independent
    (frames of one track), written by ``prepare`` and read by the verdict."""

    labels: np.ndarray
    refs: list[ImageRef] | None = None
    images: np.ndarray | None = None
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if (self.refs is None) == (self.images is None):
            raise ValueError("a split holds either refs or images (exactly one)")
        n = len(self.refs) if self.refs is not None else len(self.images)
        if n != len(self.labels):
            raise ValueError(f"split has {n} images but {len(self.labels)} labels")
        if self.groups is not None:
            self.groups = np.asarray(self.groups, dtype=str)
            if self.groups.shape != (n,):
                raise ValueError(f"split has {n} images but {self.groups.size} group ids")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: Sequence[int] | np.ndarray) -> SplitData:
        """The items at ``index`` (in that order)."""
        index = np.asarray(index, dtype=np.int64)
        groups = None if self.groups is None else self.groups[index]
        if self.refs is not None:
            return SplitData(self.labels[index], refs=[self.refs[i] for i in index], groups=groups)
        return SplitData(self.labels[index], images=self.images[index], groups=groups)


@dataclass
class RawSplits:
    """What a loader returns: class names, the three splits, and provenance for the manifest."""

    classes: list[str]
    train: SplitData
    val: SplitData
    test: SplitData
    validation: str
    test_split: str
    sources: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    #: source files/folders not used (``{"path", "reason"}``): other extensions, empty folders
    unused: list[dict[str, str]] = field(default_factory=list)
    cleanup: list[Callable[[], None]] = field(default_factory=list)
    #: the loader's warnings about its data (the manifest's ``warnings``, printed at prepare)
    warnings: list[str] = field(default_factory=list)

    def split(self, name: str) -> SplitData:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


def fetch_source(options: dict[str, Any], url: str) -> tuple[Path, dict[str, Any]]:
    """Fetch one source file for a loader; return its path and its manifest record.

    ``options["source"]`` is the mirror folder (``None`` downloads ``url``);
    ``options["sha256"]`` may map the file name to its expected digest.
    """
    name = url.rsplit("/", 1)[-1]
    expected = (options.get("sha256") or {}).get(name)
    path = archives.fetch(
        url, sha256=expected, mirror=options.get("source"), cache_dir=options.get("cache_dir")
    )
    record = {
        "path": name,
        "location": str(path) if options.get("source") is not None else url,
        "sha256": expected.lower() if expected else hashing.sha256_file(path),
    }
    return path, record


def class_index(names: Sequence[str]) -> dict[str, int]:
    """Map class name -> label index."""
    return {name: i for i, name in enumerate(names)}


def split_pool(
    pool: SplitData,
    seed: int,
    *,
    val_fraction: float,
    test_fraction: float | None = None,
    classes: Sequence[str] | None = None,
) -> tuple[SplitData, SplitData, SplitData | None]:
    """Carve stratified seeded test (if ``test_fraction``) then val splits from ``pool``.

    Returns ``(train, val, test)`` (``test`` is None without ``test_fraction``).
    """

    test = None
    if test_fraction is not None:
        keep, carved = stratified_split(
            pool.labels, test_fraction, seed, what="test", class_names=classes
        )
        test, pool = pool.subset(carved), pool.subset(keep)
    keep, carved = stratified_split(
        pool.labels, val_fraction, seed + 1, what="validation", class_names=classes
    )
    return pool.subset(keep), pool.subset(carved), test


def generated_splits(
    images: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    seed: int,
    options: dict[str, Any],
    source: str,
) -> RawSplits:
    """Raw splits of a generated image pool: stratified seeded test, then validation."""
    train, val, test = split_pool(
        SplitData(labels, images=images),
        seed,
        val_fraction=options["val_fraction"],
        test_fraction=options["test_fraction"],
        classes=classes,
    )
    return RawSplits(
        classes=list(classes),
        train=train,
        val=val,
        test=test,
        validation=f"stratified random {options['val_fraction']:.0%} of each class",
        test_split=f"stratified random {options['test_fraction']:.0%} of each class",
        sources=[{"path": source, "sha256": None}],
    )
