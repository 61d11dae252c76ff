"""``folder``: any local directory (or zip/tar of one) of class subfolders.

Accepted layouts (the root may be wrapped in single folders, e.g. a zip
holding ``flowers/``, which are descended into; a folder is such a wrapper
only when no other folder at its level holds files, no image lies directly in
it, and some subfolder of it holds files):

* ``root/<class>/**/<image>``: one pool; ``test_fraction`` (0.2) of each class
  becomes the test set, then ``val_fraction`` (0.1) of the rest validation;
* ``root/train/<class>/...`` with optional ``val/`` (also ``valid/``,
  ``validation/``) and ``test/`` (also ``testing/``): missing validation is carved
  from train, a missing test set too (``test_fraction``, carved first).

Only image files are read (by extension, see ``images.IMAGE_EXTENSIONS``, which
includes ``.jfif`` and ``.jpe``); hidden files and folders (name starting with
``.``, and ``__MACOSX``) are ignored. Nothing else disappears silently: every
other file or folder not used is listed in the manifest's ``unused`` (and
printed by ``prepare``) with its reason: ``unknown extension .txt``, ``outside
any class folder``, ``empty folder`` or ``empty class folder``. Decision: an
empty class folder (no non-hidden file) is skipped with that warning, since it
holds nothing to mislabel; a class folder that holds files but no image file
(e.g. only ``.heic``) is an error naming it and the extensions found, since its
images would otherwise vanish and the labels change. Files that do not decode
are skipped by ``prepare`` (manifest ``skipped``, counted against
``max_skipped_fraction``). Classes are the sorted union of the class folder
names, NFC-normalised (``café`` typed on macOS and on Linux is one class); two
names equal but for case or surrounding spaces (``Cat``, ``cat``, ``cat ``) are an
error naming both, and so are images directly in a split folder (``train/*.png``,
no class folders). A dataset needs at least two classes, and every class needs
training images.
Zip archives are read in place, tar archives are extracted (safely) into the
temporary work folder; member names are checked either way.

Images that are not independent (frames of one video, photos of one patient or
one object) are declared with the option ``groups``: a regular expression searched
in each image's file name, whose first capture group (or, without one, the whole
match) is the image's group id, e.g. ``groups: '^(\\d+)_'`` for ``0042_017.jpg``. An
image whose name does not match is an error naming it. Carved test and validation
splits then take whole groups (seeded, per class; a group must hold one class), the
group ids are written with every split (``{split}_groups.npy``), validation's
standard error counts groups and the verdict's bootstrap resamples them whole.

A dataset whose largest class has at least :data:`IMBALANCE` times the images of its
smallest is prepared with a warning (manifest ``warnings``, printed) naming the study
config's ``selection.metric`` (balanced accuracy or macro-F1 instead of accuracy).
"""

from __future__ import annotations

import functools
import os
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tlbench.core import hashing
from tlbench.datasets import archives
from tlbench.datasets.base import (
    ImageRef,
    Option,
    RawSplits,
    SplitData,
    archive_limits,
    class_index,
    fraction,
    register,
    split_pool,
)
from tlbench.datasets.folder_layout import (
    SPLIT_DIRS,
    check_class_names,
    folders_with_files,
    is_wrapper,
    record_outside,
    unused_note,
)
from tlbench.datasets.groups import carve, group_of, valid_regex
from tlbench.datasets.images import IMAGE_EXTENSIONS, Size, is_image_name

#: A largest class with this many times the images of the smallest is warned about.
IMBALANCE = 5.0


@dataclass
class FileTree:
    """The regular files of a folder or an archive: relative POSIX ``names`` and a reader.

    ``dirs`` lists its folders (so that empty ones can be reported).
    """

    label: str
    names: list[str]
    read: Callable[[str], bytes]
    dirs: list[str] = field(default_factory=list)


@dataclass
class Survey:
    """What :func:`survey` found: the dataset ``root``, the images per split folder
    (``[(file name, class)]``) and every non-hidden file or folder it does not use
    (``[{"path": ..., "reason": ...}]``, the manifest's ``unused``)."""

    root: str
    splits: dict[str, list[tuple[str, str]]]
    unused: list[dict[str, str]]


def _is_hidden(relname: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in relname.split("/"))


def _read_file(root: Path, limits: archives.Limits, name: str) -> bytes:
    return archives.read_regular(root / name, limits)


def _dir_tree(root: Path, label: str, limits: archives.Limits) -> FileTree:
    """Walk ``root``, following symlinked folders: a link back to a folder above it (a
    loop) is not walked again; two folders that are one real folder (sibling links to
    one folder, ``val -> test``) are an error naming both. Hidden folders are not walked."""
    names, dirs = [], []
    first = {os.path.realpath(root): "."}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(os.path.realpath(dirpath))
        rel = Path(dirpath).relative_to(root).as_posix()
        keep = []
        for name in sorted(dirnames):
            if _is_hidden(name):
                continue
            real = os.path.realpath(os.path.join(dirpath, name))
            relname = name if rel == "." else f"{rel}/{name}"
            if here == Path(real) or Path(real) in here.parents:
                continue  # a loop: that folder is being walked already
            if real in first:
                raise ValueError(
                    f"{label}: {first[real]} and {relname} are the same folder ({real}); its "
                    "images would be read twice (two labels, or one split as another): "
                    "remove one of the links"
                )
            first[real] = relname
            keep.append(name)
        dirnames[:] = keep
        dirs.extend(name if rel == "." else f"{rel}/{name}" for name in keep)
        for filename in sorted(filenames):
            names.append(filename if rel == "." else f"{rel}/{filename}")
    return FileTree(label, names, functools.partial(_read_file, root, limits), dirs)


def open_tree(
    source: Path,
    workdir: Path,
    cleanup: list[Callable[[], None]],
    limits: archives.Limits | None = None,
) -> FileTree:
    """Open a folder, zip or tar as a :class:`FileTree` (closers are added to ``cleanup``);
    ``limits``: the file-size cap and zip-bomb guard (default :class:`archives.Limits`)."""
    limits = limits or archives.Limits()
    source = Path(source).expanduser()
    if source.is_dir():
        return _dir_tree(source, str(source), limits)
    if not source.is_file():
        raise FileNotFoundError(f"dataset source {source} does not exist")
    if archives.archive_kind(source) == "zip":
        reader = archives.ZipReader(source, limits)
        cleanup.append(reader.close)
        return FileTree(source.name, reader.names, reader.read, reader.dirs)
    extracted = archives.safe_extract(
        source,
        workdir / f"extract-{source.name}",
        include=lambda n: not _is_hidden(n),
        limits=limits,
    )
    return _dir_tree(extracted, source.name, limits)


def _extension(name: str) -> str:
    return os.path.splitext(name)[1].lower() or "(none)"


def survey(tree: FileTree) -> Survey:
    """Find the dataset root, its image files per split folder, and what is not used.

    ``splits`` maps ``"train"``/``"val"``/``"test"`` (split layout) or ``"all"``
    (class folders only) to ``[(file name, class)]``. Every non-hidden file counts
    when the layout is found: a single folder is a wrapper to descend into only
    when no other folder at its level holds files. A class folder holding files
    but no image file is an error naming it and the extensions found; an empty
    class folder (no non-hidden file) is skipped and listed in ``unused``, as are
    files with another extension and files outside any class folder.
    """
    files = [n for n in tree.names if not _is_hidden(n)]
    folders = {d for d in tree.dirs if not _is_hidden(d)}
    folders |= {n.rsplit("/", 1)[0] for n in files if "/" in n}
    folders |= {
        "/".join(f.split("/")[:i]) for f in list(folders) for i in range(1, f.count("/") + 1)
    }
    unused: list[dict[str, str]] = []
    root = ""
    while True:
        with_files = folders_with_files(root, files)
        if len(with_files) == 1 and is_wrapper(root + with_files[0] + "/", files):
            record_outside(root, files, folders, with_files, unused)
            root += with_files[0] + "/"
            continue
        break
    split_dirs = [d for d in with_files if d.lower() in SPLIT_DIRS]
    record_outside(root, files, folders if split_dirs else set(), with_files, unused)
    if not with_files:
        raise ValueError(
            f"{tree.label}/{root}: no class folders with images found" + unused_note(unused)
        )
    if split_dirs:
        others = [d for d in with_files if d.lower() not in SPLIT_DIRS]
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
        class_parents = [(root + d + "/", SPLIT_DIRS[d.lower()]) for d in split_dirs]
    else:
        class_parents = [(root, "all")]
    splits: dict[str, list[tuple[str, str]]] = {}
    for parent, split in class_parents:
        level = [n for n in files if n.startswith(parent)]
        if parent != root:  # files directly in a split folder, outside any class folder
            for name in level:
                if "/" not in name[len(parent) :]:
                    unused.append({"path": name, "reason": "outside any class folder"})
        classes = sorted(
            {f[len(parent) :].split("/", 1)[0] for f in folders if f.startswith(parent)}
        )
        for cls in classes:
            prefix = f"{parent}{cls}/"
            members = [n for n in level if n.startswith(prefix)]
            if not members:
                unused.append({"path": prefix.rstrip("/"), "reason": "empty class folder"})
                continue
            images_ = [n for n in members if is_image_name(n)]
            if not images_:
                found = sorted({_extension(n) for n in members})
                raise ValueError(
                    f"{tree.label}/{prefix}: class folder {cls!r} holds {len(members)} "
                    f"file(s) but no image file (extensions found: {', '.join(found)}; "
                    f"images are {', '.join(sorted(IMAGE_EXTENSIONS))})"
                )
            for name in members:
                if not is_image_name(name):
                    unused.append({"path": name, "reason": f"unknown extension {_extension(name)}"})
            label = unicodedata.normalize("NFC", cls)
            splits.setdefault(split, []).extend((name, label) for name in images_)
        direct = [n for n in level if "/" not in n[len(parent) :] and is_image_name(n)]
        if parent != root and direct and split not in splits:
            raise ValueError(
                f"{tree.label}/{parent} holds {len(direct)} image(s) directly, not in class "
                f"folders; put each class's images in {parent}<class>/"
            )
    check_class_names(sorted({cls for items in splits.values() for _, cls in items}))
    return Survey(root, splits, unused)


def scan(tree: FileTree) -> tuple[str, dict[str, list[tuple[str, str]]]]:
    """``(root, splits)`` of :func:`survey` (the images per split folder)."""
    found = survey(tree)
    return found.root, found.splits


def make_split(
    tree: FileTree,
    items: list[tuple[str, str]],
    index: dict[str, int],
    groups: str | None = None,
) -> SplitData:
    """Turn ``[(file name, class)]`` into a :class:`SplitData` of image references, with
    each image's group id when ``groups`` (a regular expression) is given."""
    refs = [
        ImageRef(f"{tree.label}/{name}", functools.partial(tree.read, name)) for name, _ in items
    ]
    ids = None if groups is None else [group_of(groups, name) for name, _ in items]
    return SplitData([index[cls] for _, cls in items], refs=refs, groups=ids)


@register(
    "folder",
    val_fraction=Option(
        0.1, (float,), "validation fraction carved from train if no val/", fraction
    ),
    test_fraction=Option(0.2, (float,), "test fraction carved from train if no test/", fraction),
    groups=Option(
        None,
        (str,),
        "regex on each image's file name whose first group names its group (images of a "
        "group are split and resampled together); none: images are independent",
        valid_regex,
    ),
)
def load_folder(options: dict[str, Any], workdir: Path, seed: int, size: Size) -> RawSplits:
    """Load a folder/zip/tar of class subfolders (see module docstring)."""
    if options["source"] is None:
        raise ValueError("the folder loader needs 'source': a folder, zip or tar of class folders")
    source = Path(options["source"])
    cleanup: list[Callable[[], None]] = []
    tree = open_tree(source, workdir, cleanup, archive_limits(options))
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
    surveyed = survey(tree)
    root, found = surveyed.root, surveyed.splits
    classes = sorted({cls for items in found.values() for _, cls in items})
    if len(classes) == 1:
        raise ValueError(
            f"{tree.label}/{root}: only one class folder with images, {classes[0]!r}; "
            "a dataset needs at least 2 classes" + unused_note(surveyed.unused)
        )
    pool_key = "train" if "train" in found else "all"
    missing = sorted(set(classes) - {cls for _, cls in found[pool_key]})
    if missing:
        raise ValueError(f"{tree.label}/{root}: class(es) {missing} have no training images")
    index = class_index(classes)
    groups = options["groups"]
    pool = make_split(tree, found[pool_key], index, groups)
    how = "stratified random" if groups is None else "whole groups,"
    test_split = "the test/ folder"
    if "test" in found:
        test = make_split(tree, found["test"], index, groups)
    else:
        pool, test = carve(pool, options["test_fraction"], seed, "test", classes)
        test_split = f"{how} {options['test_fraction']:.0%} of each class"
    validation = "the val/ folder"
    if "val" in found:
        train, val = pool, make_split(tree, found["val"], index, groups)
    elif groups is None:
        train, val, _ = split_pool(
            pool, seed, val_fraction=options["val_fraction"], classes=classes
        )
        validation = f"{how} {options['val_fraction']:.0%} of each class"
    else:
        train, val = carve(pool, options["val_fraction"], seed + 1, "validation", classes)
        validation = f"{how} {options['val_fraction']:.0%} of each class"
    record: dict[str, Any] = {"path": str(source), "sha256": None}
    if source.is_file():
        record["sha256"] = hashing.sha256_file(source)
    labels = np.concatenate([split.labels for split in (train, val, test)])
    imbalance = imbalance_warning(classes, np.bincount(labels, minlength=len(classes)))
    return RawSplits(
        classes=classes,
        train=train,
        val=val,
        test=test,
        validation=validation,
        test_split=test_split,
        sources=[record],
        unused=surveyed.unused,
        cleanup=cleanup,
        warnings=[imbalance] if imbalance else [],
    )


def imbalance_warning(classes: Sequence[str], counts: Sequence[int]) -> str | None:
    """A warning when the largest class has at least :data:`IMBALANCE` times the images
    of the smallest (over all splits): accuracy then rewards guessing the large classes,
    and the study's ``selection.metric`` can choose by balanced accuracy or macro-F1."""
    counts = np.asarray(counts)
    big, small = int(np.argmax(counts)), int(np.argmin(counts))
    if counts[big] < IMBALANCE * counts[small]:
        return None
    return (
        f"the classes are imbalanced: the largest, {classes[big]!r} ({counts[big]} images), "
        f"has {counts[big] / counts[small]:.1f}x the images of the smallest, "
        f"{classes[small]!r} ({counts[small]}); accuracy rewards predicting the large "
        "classes: consider `selection: {metric: balanced_accuracy}` (or macro_f1) in the "
        "study config"
    )
