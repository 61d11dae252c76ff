"""``folder``: any local directory (or zip/tar of one) of class subfolders.

Accepted layouts (the root may be wrapped in single folders, e.g. a zip
holding ``flowers/``, which are descended into):

* ``root/<class>/**/<image>``: one pool; ``test_fraction`` (0.2) of each class
  becomes the test set, then ``val_fraction`` (0.1) of the rest validation;
* ``root/train/<class>/...`` with optional ``val/`` (also ``valid/``,
  ``validation/``) and ``test/`` (also ``testing/``): missing validation is carved
  from train, a missing test set too (``test_fraction``, carved first).

Only image files count (by extension, see ``images.IMAGE_EXTENSIONS``); hidden
files and folders (name starting with ``.``, and ``__MACOSX``) and files that
lie directly in the root, outside any class folder, are ignored. Classes are
the sorted union of the class folder names; every class needs training images.
Zip archives are read in place, tar archives are extracted (safely) into the
temporary work folder; member names are checked either way.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlbench.datasets import archives
from tlbench.datasets.base import (
    ImageRef,
    Option,
    RawSplits,
    SplitData,
    class_index,
    register,
    split_pool,
)
from tlbench.datasets.images import Size, is_image_name
from tlbench.datasets.splits import stratified_split

SPLIT_DIRS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


@dataclass
class FileTree:
    """The regular files of a folder or an archive: relative POSIX ``names`` and a reader."""

    label: str
    names: list[str]
    read: Callable[[str], bytes]


def _is_hidden(relname: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in relname.split("/"))


def _read_file(root: Path, name: str) -> bytes:
    return (root / name).read_bytes()


def _dir_tree(root: Path, label: str) -> FileTree:
    names = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root).as_posix()
        for filename in sorted(filenames):
            names.append(filename if rel == "." else f"{rel}/{filename}")
    return FileTree(label, names, functools.partial(_read_file, root))


def open_tree(source: Path, workdir: Path, cleanup: list[Callable[[], None]]) -> FileTree:
    """Open a folder, zip or tar as a :class:`FileTree` (closers are added to ``cleanup``)."""
    source = Path(source).expanduser()
    if source.is_dir():
        return _dir_tree(source, str(source))
    if not source.is_file():
        raise FileNotFoundError(f"dataset source {source} does not exist")
    if archives.archive_kind(source) == "zip":
        reader = archives.ZipReader(source)
        cleanup.append(reader.close)
        return FileTree(source.name, reader.names, reader.read)
    extracted = archives.safe_extract(
        source, workdir / f"extract-{source.name}", include=lambda n: not _is_hidden(n)
    )
    tree = _dir_tree(extracted, source.name)
    return tree


def scan(tree: FileTree) -> tuple[str, dict[str, list[tuple[str, str]]]]:
    """Find the dataset root and its image files per split folder.

    Returns ``(root, splits)`` where ``splits`` maps ``"train"``/``"val"``/``"test"``
    (split layout) or ``"all"`` (class folders only) to ``[(file name, class)]``.
    """
    files = [n for n in tree.names if not _is_hidden(n) and is_image_name(n)]
    root = ""
    while True:
        level = [n[len(root) :] for n in files if n.startswith(root)]
        dirs = sorted({n.split("/", 1)[0] for n in level if "/" in n})
        if len(dirs) == 1 and dirs[0].lower() not in SPLIT_DIRS:
            root += dirs[0] + "/"
            continue
        break
    if not dirs:
        raise ValueError(f"{tree.label}: no class folders with images found")
    split_dirs = [d for d in dirs if d.lower() in SPLIT_DIRS]
    if split_dirs:
        others = [d for d in dirs if d.lower() not in SPLIT_DIRS]
        if others:
            raise ValueError(
                f"{tree.label}/{root}: mixes split folders {split_dirs} with other folders "
                f"{others}; expected only {sorted(set(SPLIT_DIRS))}"
            )
        keys = [SPLIT_DIRS[d.lower()] for d in split_dirs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{tree.label}/{root}: more than one folder per split in {split_dirs}")
        if "train" not in keys:
            raise ValueError(f"{tree.label}/{root}: split folders {split_dirs} but no train/")
    splits: dict[str, list[tuple[str, str]]] = {}
    for name in files:
        if not name.startswith(root):
            continue
        parts = name[len(root) :].split("/")
        if split_dirs:
            if len(parts) < 3:
                continue  # not inside a class folder
            splits.setdefault(SPLIT_DIRS[parts[0].lower()], []).append((name, parts[1]))
        elif len(parts) >= 2:
            splits.setdefault("all", []).append((name, parts[0]))
    return root, splits


def make_split(tree: FileTree, items: list[tuple[str, str]], index: dict[str, int]) -> SplitData:
    """Turn ``[(file name, class)]`` into a :class:`SplitData` of image references."""
    refs = [
        ImageRef(f"{tree.label}/{name}", functools.partial(tree.read, name)) for name, _ in items
    ]
    return SplitData([index[cls] for _, cls in items], refs=refs)


@register(
    "folder",
    val_fraction=Option(0.1, (float,), "validation fraction carved from train if no val/"),
    test_fraction=Option(0.2, (float,), "test fraction carved from train if no test/"),
)
def load_folder(options: dict[str, Any], workdir: Path, seed: int, size: Size) -> RawSplits:
    """Load a folder/zip/tar of class subfolders (see module docstring)."""
    if options["source"] is None:
        raise ValueError("the folder loader needs 'source': a folder, zip or tar of class folders")
    source = Path(options["source"])
    cleanup: list[Callable[[], None]] = []
    tree = open_tree(source, workdir, cleanup)
    try:
        return _load_tree(tree, source, options, seed, cleanup)
    except BaseException:
        for close in cleanup:
            close()
        raise


def _load_tree(
    tree: FileTree,
    source: Path,
    options: dict[str, Any],
    seed: int,
    cleanup: list[Callable[[], None]],
) -> RawSplits:
    root, found = scan(tree)
    classes = sorted({cls for items in found.values() for _, cls in items})
    pool_key = "train" if "train" in found else "all"
    missing = sorted(set(classes) - {cls for _, cls in found[pool_key]})
    if missing:
        raise ValueError(f"{tree.label}/{root}: class(es) {missing} have no training images")
    index = class_index(classes)
    pool = make_split(tree, found[pool_key], index)
    test_split = "the test/ folder"
    if "test" in found:
        test = make_split(tree, found["test"], index)
    else:
        keep, carved = stratified_split(
            pool.labels, options["test_fraction"], seed, what="test", class_names=classes
        )
        test, pool = pool.subset(carved), pool.subset(keep)
        test_split = f"stratified random {options['test_fraction']:.0%} of each class"
    validation = "the val/ folder"
    if "val" in found:
        train, val = pool, make_split(tree, found["val"], index)
    else:
        train, val, _ = split_pool(
            pool, seed, val_fraction=options["val_fraction"], classes=classes
        )
        validation = f"stratified random {options['val_fraction']:.0%} of each class"
    record: dict[str, Any] = {"path": str(source), "sha256": None}
    if source.is_file():
        record["sha256"] = archives.sha256_file(source)
    return RawSplits(
        classes=classes,
        train=train,
        val=val,
        test=test,
        validation=validation,
        test_split=test_split,
        sources=[record],
        cleanup=cleanup,
    )
