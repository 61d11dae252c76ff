"""Atomic outputs: a file or folder is either complete or absent.

Everything the study computes is written to a temporary sibling first and
renamed into place at the end, so a killed job never leaves a half-written
result that a later step would take for a finished one.

The temporary sibling is named ``.<name>.tmp-<host>-<pid>-<random>``. A killed
process leaves it behind; the next write of the same output removes every such
leftover (and ``.<name>.old-*`` folders of an interrupted replace) except those
of a process still running on this host. Outputs get the permissions of a
normally created file or folder (``0o666`` / ``0o777`` less the umask), not the
private ``0o600`` / ``0o700`` of :mod:`tempfile`.

**Never delete what tlbench did not write.** Every folder :func:`atomic_dir`
writes holds a marker file, ``.tlbench-output``, whose one line is the kind of
output (``prepared``, ``run``, ``features``, ``figures``). An existing folder at
the target is replaced only when it is empty or holds that marker with the same
kind; anything else (a user's folder, a results folder of many runs, a file, an
output of another kind) is refused with :class:`OutputClashError` naming the
path and what is there, before anything is written or deleted. Migration: a
folder written before the marker existed is taken as ours only when every file
in it (at any depth) matches the ``legacy`` name patterns its writer gives (e.g.
a prepared dataset: ``manifest.json``, ``classes.json``, ``*_x.npy``,
``*_y.npy``) and the first pattern's file is there; one other file and it is
refused.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: The file that marks a folder as an output of tlbench; its one line is the kind.
MARKER = ".tlbench-output"


class OutputClashError(ValueError):
    """An output folder's target holds something tlbench did not write (or another kind)."""


def check_replaceable(target: str | os.PathLike, kind: str, legacy: Sequence[str] = ()) -> None:
    """Raise :class:`OutputClashError` unless ``target`` is absent, an empty folder, or an
    output of ``kind`` that tlbench wrote (its marker, or the ``legacy`` layout)."""
    target = Path(target)
    if not os.path.lexists(target):
        return
    if target.is_symlink() or not target.is_dir():
        raise OutputClashError(
            f"output folder {target} exists and is not a folder tlbench wrote "
            f"({'a symbolic link' if target.is_symlink() else 'a file'}); "
            "nothing was deleted: choose another output folder or move it away"
        )
    marker = target / MARKER
    if marker.is_file():
        found = marker.read_text().strip()
        if found == kind:
            return
        raise OutputClashError(
            f"output folder {target} holds a tlbench output of kind {found!r}, "
            f"not {kind!r}; nothing was deleted: choose another output folder"
        )
    files = [
        Path(root, name).relative_to(target).as_posix()
        for root, _, names in os.walk(target)
        for name in names
    ]
    if not files and not any(target.iterdir()):
        return
    if files and legacy and _legacy_layout(files, legacy):
        return
    shown = ", ".join(sorted(files)[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
    raise OutputClashError(
        f"output folder {target} exists and holds files tlbench did not write "
        f"({shown or 'empty folders'}; no {MARKER} marker of a {kind!r} output); "
        "nothing was deleted: choose another output folder or move it away"
    )


def _legacy_layout(files: list[str], patterns: Sequence[str]) -> bool:
    """Whether ``files`` are an output of an older tlbench: a file matches the first
    pattern and every file matches one of ``patterns``."""
    return any(fnmatch.fnmatchcase(name, patterns[0]) for name in files) and all(
        any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns) for name in files
    )


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, kind: str, legacy: Sequence[str] = ()) -> Iterator[Path]:
    """Yield a fresh temporary folder that becomes ``target`` when the block succeeds.

    On an exception the temporary folder is removed and ``target`` is left as it
    was. An existing ``target`` is replaced only once the new one is complete, and
    only when :func:`check_replaceable` allows it (checked before the block and
    again before the replace): else :class:`OutputClashError`, nothing deleted.
    The new folder holds the :data:`MARKER` of ``kind``.
    """
    target = Path(target)
    check_replaceable(target, kind, legacy)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(target), dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        (tmp / MARKER).write_text(kind + "\n")
        check_replaceable(target, kind, legacy)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file beside ``target``; rename it into place on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(target), dir=target.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    try:
        with open(tmp, mode) as handle:
            yield handle
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _tmp_prefix(target: Path) -> str:
    return f".{target.name}.tmp-{socket.gethostname()}-{os.getpid()}-"


def _running_here(leftover: str, target: Path) -> bool:
    """Whether the temporary ``leftover`` of ``target`` belongs to a live process on this host."""
    rest = leftover[len(f".{target.name}.tmp-") :]
    parts = rest.rsplit("-", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale(target: str | os.PathLike) -> list[Path]:
    """Remove the temporary leftovers of earlier, killed writes of ``target``; return them."""
    target = Path(target)
    stem = glob.escape(f".{target.name}")
    removed = []
    for path in sorted(target.parent.glob(f"{stem}.tmp-*")) + sorted(
        target.parent.glob(f"{stem}.old-*")
    ):
        if path.name.startswith(f".{target.name}.tmp-") and _running_here(path.name, target):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        removed.append(path)
    return removed


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_file(path) as handle:
        json.dump(data, handle, indent=2, sort_keys=False, default=_json_default)
        handle.write("\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")
