"""Append-only JSON-lines files that concurrent writers share: the test-split ledgers
(:mod:`tlbench.analysis.ledger`).

Appending is safe from concurrent jobs on one machine and on NFS-like shared
folders that honour ``flock``: each append is one ``os.write`` of whole lines to a
file opened with ``O_APPEND``, under an exclusive lock. Where ``flock`` is not
supported (``ENOLCK``, ``EOPNOTSUPP``: Lustre mounted without it) the lines are
appended with ``O_APPEND`` alone, with a :class:`~tlbench.core.errors.LedgerWarning`.
A torn last line (a writer killed mid-write, a full disk) is cut off by the next
append and skipped by :func:`read_lines`, each with a warning; a write cut short is
undone.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tlbench.core.errors import LedgerWarning

#: ``flock`` errors of a file system that does not support it: the line is appended
#: without the lock (one ``O_APPEND`` write), with a warning.
NO_FLOCK = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL})


def _lock(fd: int, path: Path) -> bool:
    """Lock the ledger; False (warned) where the file system has no ``flock``."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as error:
        if error.errno not in NO_FLOCK:
            raise
        warnings.warn(
            f"{path}: flock is not supported here ({error.strerror or error}); the ledger "
            "line is appended with O_APPEND alone, one write",
            LedgerWarning,
            stacklevel=3,
        )
        return False
    return True


def _torn(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"


def _cut_torn_tail(fd: int, path: Path) -> None:
    """Cut a last line without its newline (a torn write) off the file, with a warning."""
    if not _torn(fd):
        return
    size = os.fstat(fd).st_size
    start = max(0, size - (1 << 16))
    tail = os.pread(fd, size - start, start)
    keep = start + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
    if keep == 0 and start > 0:  # a line over 64 KiB: not ours, leave it to read() to name
        raise ValueError(f"{path}: its last line is over 64 KiB and has no newline")
    os.ftruncate(fd, keep)
    warnings.warn(
        f"{path}: torn last line {tail[keep - start :][:80]!r} ({size - keep} bytes) "
        "removed before appending",
        LedgerWarning,
        stacklevel=3,
    )


def append_lines(
    path: str | os.PathLike,
    records: Callable[[Path], list[Mapping[str, Any]]],
) -> list[Mapping[str, Any]]:
    """Append the lines ``records(path)`` gives, called once the file is locked (it may
    read the file to leave out what is there already), in one write. Returns them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        locked = _lock(fd, path)
        if locked:
            _cut_torn_tail(fd, path)
        chosen = records(path)
        lines = [(json.dumps(dict(r), sort_keys=True, default=str) + "\n").encode() for r in chosen]
        if any(line.count(b"\n") != 1 for line in lines):
            raise ValueError("a record must serialise to one line")
        if not lines:
            return []
        data = b"".join(lines)
        if not locked and _torn(fd):  # unlocked, a torn tail may be a write in progress:
            data = b"\n" + data  # not cut, ended instead (read() skips it, with a warning)
        size = os.fstat(fd).st_size
        written = os.write(fd, data)
        if written != len(data):
            if locked:  # no torn line left behind (unlocked, another line may follow it)
                os.ftruncate(fd, size)
            raise OSError(f"{path}: wrote {written} of {len(data)} bytes of lines")
        os.fsync(fd)
        return chosen
    finally:
        os.close(fd)  # also releases the lock


def read_lines(path: str | os.PathLike) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, JSON object)`` of each line of ``path`` (none when it does not
    exist). A torn line (no newline at the end of the file, or an object cut short) is
    skipped with a warning; any other line that is not JSON is an error naming it."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    rows = text.splitlines()
    lines = []
    for number, text_line in enumerate(rows, start=1):
        if not text_line.strip():
            continue
        try:
            item = json.loads(text_line)
        except json.JSONDecodeError as error:
            last = number == len(rows) and not text.endswith("\n")
            if last or (text_line.startswith("{") and not text_line.rstrip().endswith("}")):
                warnings.warn(
                    f"{path}:{number}: torn {'last ' if last else ''}line {text_line[:80]!r} "
                    "skipped (a write cut short; the next append cuts a torn last line off)",
                    LedgerWarning,
                    stacklevel=3,
                )
                continue
            raise ValueError(f"{path}:{number}: not a JSON ledger line: {error}") from None
        lines.append((number, item))
    return lines
