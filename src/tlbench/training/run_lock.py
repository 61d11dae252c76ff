"""One writer per run: an exclusive lock on the run's work folder for the whole run.

Two processes training one run at once (two studies that share ``results:``,
``snakemake --nolock``, a job requeued while its first attempt still runs) would
discard or overwrite each other's checkpoints and commit over each other.
:class:`RunLock` takes an exclusive, non-blocking ``flock`` on ``OUTDIR.work/.lock``
before the run reads anything and holds it until the run folder is committed and
the work folder removed; a second writer fails at once with
:class:`tlbench.core.errors.RunLockedError` naming the holder (host, pid, start),
which the lock file records. The kernel releases the lock of a killed process, so
a lock is never stale. On a file system without ``flock`` (``ENOLCK``,
``EOPNOTSUPP``) the run goes on unlocked, with a :class:`RunLockWarning`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import warnings
from pathlib import Path
from types import TracebackType

from tlbench.core.errors import RunLockedError, RunLockWarning
from tlbench.core.provenance import utc_now

#: The lock file's name in the work folder (hidden: the checkpoint code keeps it).
LOCK_NAME = ".lock"
#: ``flock`` errors of a file system that does not support it.
NO_FLOCK = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL})


def clear_folder(folder: Path, keep_hidden: bool = False) -> None:
    """Remove everything in ``folder`` but its lock file (and, ``keep_hidden``, every
    hidden file: a live writer's temporaries)."""
    for path in folder.iterdir():
        if path.name == LOCK_NAME or (keep_hidden and path.name.startswith(".")):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


class RunLock:
    """``with RunLock(workdir, outdir) as lock:`` the one writer of the run ``outdir``
    (see the module docstring); :meth:`remove_folder` once the run folder is committed."""

    def __init__(self, workdir: str | os.PathLike, outdir: str | os.PathLike):
        self.dir = Path(workdir)
        self.outdir = Path(outdir)
        self.path = self.dir / LOCK_NAME
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        while True:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 4096, 0)
                os.close(fd)
                raise RunLockedError(self._held(holder)) from None
            except OSError as error:
                if error.errno not in NO_FLOCK:
                    os.close(fd)
                    raise
                warnings.warn(
                    f"{self.path}: flock is not supported here ({error.strerror or error}); "
                    f"the run {self.outdir} goes on without a lock: make sure no other "
                    "process writes it",
                    RunLockWarning,
                    stacklevel=2,
                )
            # the holder may have removed the folder between our open and our lock:
            # then this lock is on a file no one else will open; take the new one
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "started_utc": utc_now()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self.fd = fd
        return self

    def _held(self, raw: bytes) -> str:
        try:
            holder = json.loads(raw)
            who = f"host {holder['host']}, pid {holder['pid']}, since {holder['started_utc']}"
        except (ValueError, KeyError, TypeError):
            who = "a process that has not yet written its name"
        return (
            f"{self.outdir} is being written by another process ({who}; its lock: "
            f"{self.path}); two writers of one run corrupt each other's checkpoints: "
            "wait for it to finish, or stop it"
        )

    def remove_folder(self) -> None:
        """The run is committed: remove the work folder, the lock file last (still held)."""
        if not self.dir.is_dir():
            return
        clear_folder(self.dir)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            self.dir.rmdir()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):  # a run that failed before any checkpoint
                if kind is not None and [p.name for p in self.dir.iterdir()] == [LOCK_NAME]:
                    self.remove_folder()
            os.close(self.fd)  # releases the lock
            self.fd = None
