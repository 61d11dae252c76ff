"""Datasets: the DATASETS registry, ``prepare()`` and ``load_prepared()``.

``prepare(config, outdir, image_size=..., seed=...)`` runs the loader named by
``config["loader"]`` (the other keys are its options, validated: unknown keys
are an error listing the valid ones), decodes and resizes every image, and
writes a *prepared dataset* folder atomically (complete or absent):

* ``{train,val,test}_x.npy``: uint8 ``N x H x W x 3`` (memory-mappable),
* ``{train,val,test}_y.npy``: int64 labels, indices into ``classes.json``,
* ``{train,val,test}_groups.npy``: where the loader knows images come in groups
  (GTSRB's tracks, a folder's ``groups`` pattern), each image's group id (str);
  the manifest's ``groups`` counts them per split,
* ``classes.json``: the class names,
* ``manifest.json``: counts, per-class counts, skipped files with reasons,
  source files/folders not used with reasons (``unused``, also printed),
  sources with sha256, how validation and test were made, the config as
  given plus the resolved options, and the tlbench version.

A file that cannot be read or decoded, whatever the error (a dangling symlink, a FIFO or
device, a file above ``max_file_mb``, a broken EXIF block, a zip member with a bad CRC or
encrypted), is one skipped file, listed with its reason; if more than
``max_skipped_fraction`` (default 0.01) of all images are skipped, ``prepare``
fails naming the count and the fraction. ``load_prepared(path)`` opens such a
folder as :class:`PreparedData`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import tlbench
from tlbench.core.atomic import atomic_dir, write_json
from tlbench.core.paths import check_apart
from tlbench.core.progress import progress
from tlbench.datasets import duplicates, images
from tlbench.datasets.base import DATASETS, SPLITS, RawSplits, SplitData, resolve_options
from tlbench.datasets.guards import SkipBudget, check_room, skip_reason

# Importing the loader modules registers them.
from tlbench.datasets import (  # noqa: E402,F401  isort: skip
    digits,
    folder,
    fractal,
    gtsrb,
    hymenoptera,
    pets,
    synthetic,
)


_CHUNK = 1024

#: The files of a prepared dataset written before outputs were marked
#: (:data:`tlbench.core.atomic.MARKER`): such a folder is taken as a prepared dataset.
PREPARED_LAYOUT = ("manifest.json", "classes.json", "*_x.npy", "*_y.npy")


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _write_refs(
    path: Path,
    name: str,
    data: SplitData,
    size: images.Size,
    budget: SkipBudget,
    hashes: duplicates.Hashes,
) -> np.ndarray:
    """Decode ``data.refs`` into ``path`` (uint8 NHWC .npy); return the kept indices."""
    refs = data.refs or []
    partial = path.with_name(path.name + ".partial")
    out = np.lib.format.open_memmap(
        partial, mode="w+", dtype=np.uint8, shape=(len(refs), size[0], size[1], 3)
    )
    keep: list[int] = []
    with progress(f"preparing {name}", len(refs)) as shown:
        for i, ref in enumerate(refs):
            shown.advance()
            try:
                data_bytes = ref.read()
                picture = images.decode(data_bytes, ref.name)
                out[len(keep)] = images.resize(picture, size, ref.box, ref.name)
                hashes.add(ref.name, picture, data_bytes)  # on the decoded image, once
            except MemoryError:
                raise
            except Exception as exc:  # one bad file is one counted skip, whatever the error
                budget.add({"file": ref.name, "split": name, "reason": skip_reason(exc)})
                continue
            keep.append(i)
    out.flush()
    if len(keep) == len(refs):
        del out
        os.replace(partial, path)
    else:
        final = np.lib.format.open_memmap(
            path, mode="w+", dtype=np.uint8, shape=(len(keep), size[0], size[1], 3)
        )
        for start in range(0, len(keep), _CHUNK):
            stop = min(start + _CHUNK, len(keep))
            final[start:stop] = out[start:stop]
        final.flush()
        del final, out
        partial.unlink()
    return np.asarray(keep, dtype=np.int64)


def _write_split(
    outdir: Path,
    name: str,
    data: SplitData,
    size: images.Size,
    budget: SkipBudget,
    hashes: duplicates.Hashes,
) -> np.ndarray:
    """Write ``{name}_x.npy``, ``{name}_y.npy`` and, when the split has group ids,
    ``{name}_groups.npy`` (hashing each image into ``hashes``); return the labels
    written."""
    x_path = outdir / f"{name}_x.npy"
    if data.images is not None:
        array = images.resize_array(np.asarray(data.images), size)
        np.save(x_path, np.ascontiguousarray(array, dtype=np.uint8))
        for i, image in enumerate(array):
            hashes.add(f"{name}[{i}]", Image.fromarray(image, "RGB"))
        keep = np.arange(len(data))
    else:
        keep = _write_refs(x_path, name, data, size, budget, hashes)
    labels = np.asarray(data.labels[keep], dtype=np.int64)
    np.save(outdir / f"{name}_y.npy", labels)
    if data.groups is not None:
        np.save(outdir / f"{name}_groups.npy", data.groups[keep])
    return labels


def _check_labels(raw: RawSplits) -> None:
    if len(raw.classes) < 2:
        raise ValueError(f"a dataset needs at least 2 classes, got {raw.classes}")
    for name in SPLITS:
        labels = raw.split(name).labels
        if len(labels) and (labels.min() < 0 or labels.max() >= len(raw.classes)):
            raise ValueError(f"{name} labels outside 0..{len(raw.classes) - 1}")


def _duplicates(
    outdir: Path,
    options: dict[str, Any],
    hashes: dict[str, duplicates.Hashes],
    labels: dict[str, np.ndarray],
    classes: list[str],
) -> dict[str, Any]:
    """Find the duplicates; act on them as the option ``duplicates`` says (see
    :mod:`tlbench.datasets.duplicates`); return the manifest's record, with
    ``test_images``: the test split's images as kept, whatever their size
    (:func:`tlbench.datasets.duplicates.images_fingerprint`)."""
    found = duplicates.find(hashes, labels, classes, options["near_distance"])
    gone = set(found["train_copies"]["test"]) if options["duplicates"] == "drop" else set()
    kept = [i for i in range(len(labels["test"])) if i not in gone]
    test = duplicates.Hashes(exact=[hashes["test"].exact[i] for i in kept])
    test_images = duplicates.images_fingerprint(test, labels["test"][kept], classes)
    if options["duplicates"] == "error" and (bad := duplicates.across(found)):
        counts = ", ".join(f"{k}: {v}" for k, v in bad.items())
        raise ValueError(
            f"duplicates: error: copies across splits or classes ({counts}); "
            + " ".join(duplicates.summary(found))
        )
    found["action"] = options["duplicates"]
    if options["duplicates"] == "drop":
        found["dropped"] = duplicates.drop(outdir, found, labels, hashes)
    del found["train_copies"]
    return {**found, "test_images": test_images}


def _drop_study_keys(config: dict[str, Any], size: images.Size, seed: int) -> dict[str, Any]:
    """Drop the study-level keys ``image_size``/``seed`` of a dataset entry (see prepare).

    They may be present (a study config's dataset entry holds them) but must agree
    with the arguments of :func:`prepare`.
    """
    if not isinstance(config, dict):
        raise ValueError(f"a dataset config must be a mapping, got {config!r}")
    config = dict(config)
    if "image_size" in config:
        given = config.pop("image_size")
        if images.normalize_size(given) != size:
            raise ValueError(
                f"dataset config has image_size {given!r} but prepare() was asked for {list(size)}"
            )
    if "seed" in config:
        given = config.pop("seed")
        if given != seed:
            raise ValueError(f"dataset config has seed {given!r} but prepare() was given {seed}")
    return config


def prepare(
    config: dict[str, Any],
    outdir: str | os.PathLike,
    *,
    image_size: int | tuple[int, int] | list[int],
    seed: int,
) -> Path:
    """Prepare the dataset described by ``config`` into ``outdir`` (atomically); return it.

    ``image_size`` is an int (square) or ``(height, width)``; ``seed`` drives every
    random choice (splits, generated data), so the result is deterministic. A
    study config's dataset entry may be passed as is: its ``image_size`` and
    ``seed`` keys are accepted when they agree with the arguments.
    """
    size = images.normalize_size(image_size)
    seed = _check_seed(seed)
    name, options = resolve_options(_drop_study_keys(config, size, seed))
    outdir = Path(outdir)
    if options["source"] is not None:
        check_apart(outdir, "output folder", options["source"], "the dataset's source")
    started = time.perf_counter()
    with atomic_dir(outdir, "prepared", PREPARED_LAYOUT) as tmp:
        # inside the temporary output: a killed prepare leaves one leftover, removed on retry
        with tempfile.TemporaryDirectory(prefix=".work-", dir=tmp) as work:
            check_room(size, 1, tmp)
            raw = DATASETS.get(name)(options, Path(work), seed, size)
            try:
                _check_labels(raw)
                skipped = list(raw.skipped)
                total = sum(len(raw.split(s)) for s in SPLITS) + len(skipped)
                check_room(size, total, tmp)
                budget = SkipBudget(total, options["max_skipped_fraction"], skipped)
                budget.check()
                hashes = {s: duplicates.Hashes() for s in SPLITS}
                written = {
                    s: _write_split(tmp, s, raw.split(s), size, budget, hashes[s]) for s in SPLITS
                }
            finally:
                for close in raw.cleanup:
                    close()
        copies = _duplicates(tmp, options, hashes, written, list(raw.classes))
        test_images = copies.pop("test_images")
        n = len(raw.classes)
        class_counts = {s: np.bincount(y, minlength=n).tolist() for s, y in written.items()}
        missing = [raw.classes[c] for c, k in enumerate(class_counts["train"]) if k == 0]
        if missing:
            raise ValueError(f"no training images left for class(es) {missing}")
        warnings = list(raw.warnings) + [
            f"class {raw.classes[c]!r} has training images but none in {', '.join(splits)}"
            for c in range(n)
            if (splits := [s for s in ("val", "test") if class_counts[s][c] == 0])
        ]
        write_json(tmp / "classes.json", list(raw.classes))
        manifest = {
            "dataset": name,
            "image_size": list(size),
            "seed": seed,
            "num_classes": n,
            "counts": {s: int(len(y)) for s, y in written.items()},
            "class_counts": class_counts,
            "skipped": skipped,
            "unused": list(raw.unused),
            "warnings": warnings,
            "duplicates": copies,
            "sources": raw.sources,
            "validation": raw.validation,
            "test": raw.test_split,
            "test_images": test_images,
            **_group_counts(tmp),
            "params": dict(config),
            "options": {k: v for k, v in options.items()},
            "prepare_seconds": round(time.perf_counter() - started, 3),
            "tlbench_version": tlbench.__version__,
        }
        write_json(tmp / "manifest.json", manifest)
    report_unused(manifest)
    return outdir


def _group_counts(prepared: Path) -> dict[str, Any]:
    """``{"groups": {split: number of groups}}`` for the splits written with group ids
    (``{split}_groups.npy``); nothing when none has them (the manifest, and so the
    data fingerprint, of an ungrouped dataset is unchanged)."""
    counts = {
        s: int(len(np.unique(np.load(prepared / f"{s}_groups.npy"))))
        for s in SPLITS
        if (prepared / f"{s}_groups.npy").is_file()
    }
    return {"groups": counts} if counts else {}


def report_unused(manifest: dict[str, Any], limit: int = 20) -> None:
    """Print the manifest's warnings and the source files and folders a prepare did not use,
    with reasons, to stderr."""
    copies = manifest.get("duplicates")
    for warning in manifest.get("warnings", []) + (duplicates.summary(copies) if copies else []):
        print(f"tlbench prepare: warning: {warning}", file=sys.stderr)
    lines = [f"{u['path']}: {u['reason']}" for u in manifest.get("unused", [])]
    lines += [f"{r['file']}: skipped, {r['reason']}" for r in manifest.get("skipped", [])]
    if not lines:
        return
    shown = lines[:limit] + ([f"... and {len(lines) - limit} more"] if len(lines) > limit else [])
    print(
        f"tlbench prepare: warning: {len(lines)} source file(s)/folder(s) not used "
        "(listed in manifest.json 'unused' and 'skipped'):\n  " + "\n  ".join(shown),
        file=sys.stderr,
    )


@dataclass(frozen=True)
class PreparedData:
    """A prepared dataset folder (see module docstring)."""

    path: Path
    manifest: dict[str, Any]
    classes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of every image."""
        height, width = self.manifest["image_size"]
        return int(height), int(width)

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.manifest["counts"])

    def groups(self, name: str) -> np.ndarray | None:
        """The group id of each image of split ``name`` (images of a group are not
        independent: frames of one track), or None when the split declares none."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; valid splits: {', '.join(SPLITS)}")
        path = self.path / f"{name}_groups.npy"
        if not path.is_file():
            return None
        groups = np.load(path)
        if len(groups) != int(self.manifest["counts"][name]):
            raise ValueError(
                f"{path}: {len(groups)} group ids for {self.manifest['counts'][name]} "
                "images; the folder is damaged, prepare it again"
            )
        return groups

    def split(self, name: str, mmap: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(x, y)`` of split ``name``; ``x`` is memory-mapped read-only by default."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; valid splits: {', '.join(SPLITS)}")
        x = np.load(self.path / f"{name}_x.npy", mmap_mode="r" if mmap else None)
        y = np.load(self.path / f"{name}_y.npy")
        if x.shape[0] != y.shape[0] or x.dtype != np.uint8 or x.ndim != 4:
            raise ValueError(
                f"{self.path}: {name}_x.npy {x.shape} {x.dtype} does not match {name}_y.npy "
                f"{y.shape}; the folder is damaged, prepare it again"
            )
        return x, y


def make_tiny_prepared(
    outdir: str | os.PathLike,
    num_classes: int = 3,
    size: int = 16,
    per_class: int = 24,
    seed: int = 0,
) -> Path:
    """Prepare a tiny synthetic dataset into ``outdir`` via ``prepare()``; return the folder."""
    config = {"loader": "synthetic", "num_classes": num_classes, "per_class": per_class}
    return prepare(config, outdir, image_size=size, seed=seed)


def load_prepared(path: str | os.PathLike, splits: Sequence[str] = SPLITS) -> PreparedData:
    """Open a prepared dataset folder; missing files are an error naming them.

    ``splits``: the splits whose files must be there (a pilot run opens
    ``("train", "val")`` only: the test files need not exist and are never read).
    """
    path = Path(path)
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ValueError(f"unknown split(s) {unknown}; valid splits: {', '.join(SPLITS)}")
    needed = ["manifest.json", "classes.json"] + [f"{s}_{a}.npy" for s in splits for a in "xy"]
    missing = [f for f in needed if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{path} is not a prepared dataset (missing {', '.join(missing)}); "
            "create it with tlbench.datasets.prepare / `tlbench prepare`"
        )
    manifest = json.loads((path / "manifest.json").read_text())
    classes = json.loads((path / "classes.json").read_text())
    return PreparedData(path=path, manifest=manifest, classes=list(classes))
