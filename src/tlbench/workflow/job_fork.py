"""The job server's forks (tlbench.workflow.jobserver): whether this system lets the
server watch a forked job (:func:`check_fork_support`), the forked process itself,
which waits for the server's go before it becomes the job (:func:`run_child`), and
the checks around a fork: the peer's user (:func:`peer_uid`), a started backend
runtime (:func:`runtime_started`), changed sources (:func:`sources_fingerprint`).

The child runs nothing of the job until the server has set up its watch on it (a
pidfd): if that fails (``os.pidfd_open`` refused by seccomp, say), the server closes
the go pipe, the child exits without having run anything, and the job is refused
(it runs in its own process).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import runpy
import signal
import socket
import struct
import sys
import time
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: The go the server writes to a forked child once it watches it.
GO = b"go"
#: Seconds a killed job's child gets between SIGTERM and SIGKILL.
KILL_GRACE = 5.0


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (``SO_PEERCRED``)."""
    ucred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", ucred)[1]


def check_fork_support() -> None:
    """Raise RuntimeError, saying why, where the server could not watch its forks:
    ``os.pidfd_open`` missing (Python < 3.9, not Linux) or refused (an old kernel,
    seccomp)."""
    if not hasattr(os, "pidfd_open"):
        raise RuntimeError("os.pidfd_open is not available (Python >= 3.9 on Linux >= 5.3)")
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError as error:
        raise RuntimeError(f"os.pidfd_open is refused here ({error})") from None


def runtime_started() -> str | None:
    """Why this process must not fork jobs: a Keras backend's runtime has started in it
    (its thread pools would be copied half-held into the child, which can hang), or
    whether it has cannot be told; None when only imports ran."""
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        # deferred: only when that runtime is already imported
        from tensorflow.python.eager import context

        started = getattr(context.context(), "_initialized", None)
        if started is None:
            return "cannot tell whether TensorFlow's runtime started in the job server"
        if started:
            return "TensorFlow's runtime started in the job server before the fork"
    if "jax" in sys.modules:
        # deferred: only when that runtime is already imported
        from jax._src import xla_bridge

        backends = getattr(xla_bridge, "_backends", None)
        if backends is None:
            return "cannot tell whether JAX's runtime started in the job server"
        if backends:
            return "JAX's runtime started in the job server before the fork"
    return None


def die_with_parent(server: int) -> None:
    """Have the kernel kill this process when its parent, the server (pid ``server``),
    dies (Linux's PR_SET_PDEATHSIG), so that a job never outlives the server that
    answers for it."""

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != server:  # the server died before the call
        os._exit(1)


def run_child(
    request: dict[str, Any],
    env: dict[str, str],
    fds: list[int],
    server_fds: Iterable[int],
    server: int,
    go: int,
):
    """In the forked process of server ``server``: wait for the server's go on the
    pipe ``go`` (none: exit, having run nothing), then become the job (its
    environment ``env``, its streams ``fds``, its cwd and argv) and run its script;
    never returns."""
    code = 1
    try:
        if os.read(go, len(GO)) != GO:  # the server could not watch this process
            os._exit(1)
        os.close(go)
        os.setsid()  # its own process group: killed as a whole with the job
        die_with_parent(server)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        for fd in server_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(env)
        sys.argv = list(request["argv"])

        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
            code = 0
        except SystemExit as done:  # as the interpreter treats sys.exit(code)
            if done.code is None or isinstance(done.code, int):
                code = done.code or 0
            else:
                print(done.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def sources_fingerprint(package: str = "tlbench") -> list[tuple[str, int, int]]:
    """(path, mtime_ns, size) of every ``.py`` file of ``package``'s folder (no import)."""

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return []
    out = []
    for folder in spec.submodule_search_locations:
        for path in sorted(Path(folder).rglob("*.py")):
            stat = path.stat()
            out.append((str(path), stat.st_mtime_ns, stat.st_size))
    return out


def kill_jobs(pids: list[int]) -> None:
    """Stop the forked jobs ``pids``, each with its process group: SIGTERM, then
    SIGKILL after :data:`KILL_GRACE` seconds."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE
    for pid in pids:
        while time.monotonic() < deadline:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
