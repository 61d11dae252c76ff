"""A prepared dataset's content hash (:func:`data_fingerprint`): what a resumed run checks
before it continues from a checkpoint; one split's content hash (:func:`split_fingerprint`):
what the machine's test-split ledger counts looks at a test split by; a dataset source's
fingerprint (:func:`source_fingerprint`): what the workflow prepares a dataset again on.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from tlbench.core.hashing import sha256_file


def data_fingerprint(data: Any) -> str:
    """A content hash of a prepared dataset, cheap to compute at every run start.

    sha256 over manifest.json (without its ``prepare_seconds``), classes.json,
    the train and val labels and, per split, the images' shape and up to 64 evenly
    spaced images (the splits training reads: the test split is not opened).
    Preparing the data again with other labels, classes, size, sources or options
    changes it; preparing it again identically does not.
    """
    digest = hashlib.sha256()
    manifest = {k: v for k, v in data.manifest.items() if k != "prepare_seconds"}
    digest.update(json.dumps(manifest, sort_keys=True, default=str).encode())
    digest.update(json.dumps(list(data.classes)).encode())
    for name in ("train", "val"):
        x, y = data.split(name)
        _update_labels(digest, name, x, y)
        if len(x):
            picks = np.unique(np.linspace(0, len(x) - 1, num=min(64, len(x))).astype(np.int64))
            digest.update(np.ascontiguousarray(x[picks]).tobytes())
    return digest.hexdigest()


def _update_labels(digest: Any, name: str, x: np.ndarray, y: np.ndarray) -> None:
    """A split's name, images' shape and dtype, and every label, into ``digest``."""
    digest.update(f"{name} {x.shape} {x.dtype} {y.dtype}".encode())
    digest.update(np.ascontiguousarray(y).tobytes())


#: Images hashed per step by :func:`split_fingerprint` (bounded memory on large splits).
_ROWS = 1024


def split_fingerprint(prepared: str | os.PathLike, split: str = "test") -> str:
    """sha256 of one split of a prepared dataset folder: its class names, every label and
    every image (shape, dtype, bytes): the data itself, nothing of the manifest (no
    preparation time, options, source locations or tlbench version).

    Preparing the same images again gives the same fingerprint, wherever and whenever it
    is done; another image size, another split seed or other classes give another. The
    machine's test-split ledger (:mod:`tlbench.analysis.ledger`) counts the looks at a
    test split by it. Computed once per folder content in a process (the split file's
    path, size and modification time).
    """
    folder = Path(prepared)
    files = [folder / "classes.json", folder / f"{split}_x.npy", folder / f"{split}_y.npy"]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"prepared dataset {folder} has no {', '.join(missing)}: its {split} split "
            "cannot be fingerprinted"
        )
    stats = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return _split_sha256(split, tuple(stats))


@functools.cache
def _split_sha256(split: str, files: tuple[tuple[str, int, int], ...]) -> str:
    classes, x_path, y_path = (Path(f[0]) for f in files)
    x = np.load(x_path, mmap_mode="r")
    y = np.load(y_path, mmap_mode="r")
    if len(x) != len(y):
        raise ValueError(f"{x_path}: {len(x)} images but {len(y)} labels in {y_path.name}")
    digest = hashlib.sha256()
    digest.update(json.dumps(json.loads(classes.read_text())).encode())
    _update_labels(digest, split, x, y)
    for start in range(0, len(x), _ROWS):
        digest.update(np.ascontiguousarray(x[start : start + _ROWS]).tobytes())
    return digest.hexdigest()


def source_fingerprint(source: str | os.PathLike | None) -> str:
    """A fingerprint of a dataset's ``source`` that changes when its content does.

    A folder: sha256 over every non-hidden file's relative path, size and
    modification time (symlinked folders followed, each real folder once), so
    adding, moving, editing or removing an image changes it; a file (an
    archive): its sha256 (computed once per file, size and modification time in a
    process); no source (downloads): ``""``; a missing one: ``"missing"``.
    The workflow's ``prepared_dataset`` takes it as a param, so a changed source
    prepares the dataset again and reruns what depends on it.
    """
    if source is None:
        return ""
    path = Path(source).expanduser()
    if path.is_file():
        stat = path.stat()
        return "sha256:" + _file_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if not path.is_dir():
        return "missing"
    digest = hashlib.sha256()
    seen = {os.path.realpath(path)}
    for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
        real = {d: os.path.realpath(os.path.join(dirpath, d)) for d in dirnames}
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and real[d] not in seen)
        seen.update(real[d] for d in dirnames)
        rel = Path(dirpath).relative_to(path).as_posix()
        for name in sorted(f for f in filenames if not f.startswith(".")):
            full = os.path.join(dirpath, name)
            try:
                stat = os.stat(full)
            except OSError:  # a dangling link: its own entry
                stat = os.lstat(full)
            digest.update(f"{rel}/{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return "files:" + digest.hexdigest()


@functools.cache
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)
