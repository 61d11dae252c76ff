"""Warm job processes: the workflow imports Keras once and forks a process per job.

Every Snakemake job is a fresh Python process, and importing Keras with TensorFlow
costs about 7 s on a 2-core AMD EPYC, as long as training one of the quickstart's
runs; the quickstart has 37 of them. So on local execution the workflow starts one
*job server* (the Snakefile's ``onstart``: :func:`start`), a process that imports
:data:`PRELOAD` once and listens on a Unix socket whose path it exports to the jobs
as :data:`ENV`. Every job script begins with ``import _bootstrap``, which calls
:func:`delegate`: the job asks the server to run it; the server forks, and the
child takes the job's working directory, environment, standard streams (passed over
the socket) and command line, runs the job's script (Snakemake's generated copy,
preamble included) and exits; its exit status becomes the job's.

Each job is still its own process — own memory, random state, thread limits and log
— started, logged, retried and rerun by Snakemake exactly as before; only the
imports are shared, and nothing of Keras has run in the server before it forks (its
thread pools start in the child, under the job's thread limit). A run trained in a
forked child is the run trained in a fresh process, bit for bit
(``tests/test_jobserver.py``), and says so in ``environment.job_process``
(:func:`job_process`).

A job runs in its own process instead, with a line on its standard error saying
why, when the server cannot serve it faithfully: the server is gone, the job's
interpreter or import-time environment (:data:`KEY_PREFIXES`: ``PYTHONPATH``,
``KERAS_BACKEND``, ``KERAS_HOME``, ...) differs from the server's, tlbench's
sources changed since the server imported them, a preloaded module started a
backend's runtime (:func:`~tlbench.workflow.job_fork.runtime_started`), the two run as
different users (``SO_PEERCRED``, checked by both), or taking the job failed (a fork,
its pidfd: that job only). A server that cannot start is one warning (:func:`start`);
a forked job past its Snakemake ``runtime`` is killed, saying so. A job killed
by Snakemake closes its socket, and the server kills the job's child (its whole
process group); a server that dies (killed, out of memory) takes its jobs' children
with it, and those jobs fail (rerun by Snakemake as any failed job). The
server exits when it is stopped (``onsuccess``/``onerror``: :func:`stop`) or when
the Snakemake process that started it is gone.

Only :func:`serve` imports anything heavy; the client side (:func:`delegate`) uses
the standard library alone.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.util
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tlbench.core.provenance import FORKED_ENV
from tlbench.workflow.job_fork import (
    GO,
    KILL_GRACE,
    check_fork_support,
    kill_jobs,
    peer_uid,
    run_child,
    runtime_started,
    sources_fingerprint,
)

#: The environment variable that tells a job the server's socket.
ENV = "TLBENCH_JOB_SERVER"
#: What the server imports once for every job: Keras (with its backend) and the
#: modules of the jobs that train, extract features and draw.
PRELOAD = (
    "keras",
    "tlbench.training.engine",
    "tlbench.training.feature_cache",
    "tlbench.analysis.transferability.scores",
    "tlbench.analysis.transferability.cache",
    "tlbench.analysis.tables",
    "tlbench.report.render",
    "tlbench.report.figures.runs",
    "tlbench.report.figures.study",
    "snakemake.script",
)
#: Environment variables read at import time: a job whose values differ from the
#: server's runs in its own process (variables starting with one of these).
KEY_PREFIXES = ("PYTHON", "KERAS_", "TF_", "XLA_", "JAX_", "CUDA_", "LD_", "MPL")
#: Set per job by :func:`tlbench.workflow.jobs.limit_threads` (after delegation): not compared.
PER_JOB = frozenset({"TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "XLA_FLAGS"})
#: Largest request (a job's command line, working directory and environment).
MAX_MESSAGE = 1 << 20
#: Seconds :func:`start` waits for the server's imports (Keras: ~7 s on 2 idle cores).
START_SECONDS = 300.0
#: Bytes of a Unix socket's path, its final NUL included (Linux's ``sun_path``).
SOCKET_PATH_MAX = 108


def import_key(env: Mapping[str, str]) -> dict[str, Any]:
    """What must be equal between a job and the server for the job to run forked:
    the interpreter and the environment variables read at import time."""
    return {
        "executable": sys.executable,
        "prefix": sys.prefix,
        "env": {k: v for k, v in env.items() if k.startswith(KEY_PREFIXES) and k not in PER_JOB},
    }


# ---------------------------------------------------------------- the server's side


class Server:
    """The job server's loop: one selector over the listening socket, the jobs'
    connections and their children (pidfds); single-threaded, so a fork never copies
    a lock held by another thread."""

    def __init__(self, path: str, parent: int | None = None):
        check_fork_support()  # a server that could not watch its forks does not start
        self.path = path
        self.parent = os.getppid() if parent is None else parent
        self.key = import_key(os.environ)
        self.sources = sources_fingerprint()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.bound = os.path.join(os.path.dirname(path), ".bind")  # path once ready: publish
        self.listener.bind(self.bound)
        self.listener.listen(64)
        self.selector = selectors.EpollSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, ("accept", None))
        self.children: dict[int, tuple[socket.socket, int]] = {}  # pid -> (conn, pidfd)
        self.deadlines: dict[int, tuple[float, float]] = {}  # pid -> (deadline, runtime min)
        self.timed_out: dict[int, float] = {}  # pid -> its runtime (min), once killed
        self.stopping = False
        self.unsafe: str | None = None  # why no job may be forked (runtime_started)

    def _refusal(self, request: Any) -> str | None:
        if self.unsafe:
            return self.unsafe
        if not isinstance(request, dict) or not {"argv", "cwd", "env", "key"} <= set(request):
            return "a malformed request"
        runtime = request.get("runtime_minutes")
        if runtime is not None and (not isinstance(runtime, int | float) or not runtime > 0):
            return f"a malformed request (runtime_minutes {runtime!r})"
        if request["key"] != self.key:
            theirs, ours = request["key"], self.key
            differs = sorted(
                {k for k in ("executable", "prefix") if theirs.get(k) != ours[k]}
                | {
                    k
                    for k in set(theirs.get("env", {})) | set(ours["env"])
                    if theirs.get("env", {}).get(k) != ours["env"].get(k)
                }
            )
            return "its interpreter or import-time environment differs from the server's: " + (
                ", ".join(differs)
            )
        if sources_fingerprint() != self.sources:
            return "tlbench's sources changed since the server imported them"
        return None

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        uid = peer_uid(conn)
        refusal = None
        if uid != os.getuid():  # SO_PEERCRED: the server serves its own user only
            refusal = (
                f"the job server runs as uid {os.getuid()} and serves that user only; "
                f"this job runs as uid {uid}"
            )
        self.selector.register(conn, selectors.EVENT_READ, ("request", refusal))

    def _request(self, conn: socket.socket, refusal: str | None) -> None:
        """Fork the job that ``conn`` asks for, or refuse it (it then runs in its own
        process): an error while taking one job refuses that job only."""
        try:
            data, fds, _, _ = socket.recv_fds(conn, MAX_MESSAGE, 3)
        except OSError:
            data, fds = b"", []
        self.selector.unregister(conn)
        try:
            refusal = refusal or self._take(conn, data, fds)
        except Exception as error:
            refusal = f"the job server could not take this job ({type(error).__name__}: {error})"
        if refusal is not None:
            for fd in fds:  # those not yet handed over
                with contextlib.suppress(OSError):
                    os.close(fd)
            with contextlib.suppress(OSError):
                conn.send(refusal.encode())
            conn.close()

    def _take(self, conn: socket.socket, data: bytes, fds: list[int]) -> str | None:
        try:
            request = json.loads(data) if data else None
        except ValueError:
            request = None
        refusal = "no request" if not data else self._refusal(request)
        if refusal is None and len(fds) != 3:
            refusal = "the job's standard streams did not arrive"
        if refusal is not None:
            return refusal
        sys.stdout.flush()
        sys.stderr.flush()
        server_fds = [self.listener.fileno(), self.selector.fileno(), conn.fileno()]
        for other, pidfd in self.children.values():
            server_fds += [other.fileno(), pidfd]
        env = {k: v for k, v in request["env"].items() if k != ENV}
        env[FORKED_ENV] = self.path
        server = os.getpid()
        gc.freeze()  # the server's objects: never scanned (nor their pages copied) by a job's gc
        go_read, go_write = os.pipe()
        try:
            pid = os.fork()
        except BaseException:
            os.close(go_read)
            os.close(go_write)
            raise
        if pid == 0:
            os.close(go_write)
            run_child(request, env, fds, server_fds, server, go_read)
        os.close(go_read)
        while fds:
            os.close(fds.pop())
        try:
            pidfd = os.pidfd_open(pid)
        except Exception as error:
            os.close(go_write)  # no go: the child exits having run nothing
            os.waitpid(pid, 0)
            return f"cannot watch the forked job ({type(error).__name__}: {error})"
        os.write(go_write, GO)
        os.close(go_write)
        self.children[pid] = (conn, pidfd)
        self.selector.register(conn, selectors.EVENT_READ, ("gone", pid))
        self.selector.register(pidfd, selectors.EVENT_READ, ("exited", pid))
        runtime = request.get("runtime_minutes")
        if runtime is not None:
            self.deadlines[pid] = (time.monotonic() + 60 * runtime, runtime)
        return None

    def _expire(self) -> None:
        """Kill the forked jobs that ran past their runtime (the job is told so)."""
        late = [pid for pid, (end, _) in self.deadlines.items() if time.monotonic() > end]
        for pid in late:
            self.timed_out[pid] = self.deadlines.pop(pid)[1]
        kill_jobs(late)

    def _exited(self, pid: int) -> None:
        conn, pidfd = self.children.pop(pid)
        self.deadlines.pop(pid, None)
        _, status = os.waitpid(pid, 0)
        with contextlib.suppress(KeyError):  # already unregistered when the job was killed
            self.selector.unregister(conn)
        self.selector.unregister(pidfd)
        os.close(pidfd)
        reply = f"exit {os.waitstatus_to_exitcode(status) % 256}"
        if pid in self.timed_out:
            reply = f"timeout {self.timed_out.pop(pid)}"
        with contextlib.suppress(OSError):
            conn.send(reply.encode())
        conn.close()

    def _gone(self, pid: int) -> None:
        """The job's connection closed before its child exited: the job was killed."""
        conn, _ = self.children[pid]
        self.selector.unregister(conn)
        kill_jobs([pid])

    def serve_forever(self) -> None:
        def stop(signum, frame):
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            while not self.stopping:
                for item, _ in self.selector.select(timeout=1.0):
                    what, arg = item.data  # a child's pid; a request's refusal (another user)
                    try:
                        if what == "accept":
                            self._accept()
                        elif what == "request":
                            self._request(item.fileobj, arg)
                        elif what == "exited":
                            self._exited(arg)
                        elif what == "gone" and arg in self.children:
                            self._gone(arg)
                    except Exception:  # one event's failure ends neither the server nor others
                        traceback.print_exc()
                self._expire()
                if os.getppid() != self.parent:  # the workflow's process is gone
                    break
        finally:
            self.close()

    def publish(self) -> None:
        """Make the socket visible at its path (start() waits for it): the server is ready."""
        os.replace(self.bound, self.path)

    def close(self) -> None:
        self.listener.close()
        for name in (self.bound, self.path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
        children = list(self.children)
        kill_jobs(children)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def serve(path: str, preload: Iterable[str] = PRELOAD, parent: int | None = None) -> None:
    """Listen, import ``preload``, then publish the socket at ``path`` and serve jobs
    until stopped (see the module docstring); an import that fails ends the server
    before its socket is seen (:func:`start` says so once)."""
    server = Server(path, parent)
    for module in preload:
        importlib.import_module(module)
    server.unsafe = runtime_started()
    server.publish()
    server.serve_forever()


# ---------------------------------------------------------------- the workflow's side


def start(preload: Iterable[str] = PRELOAD) -> subprocess.Popen | None:
    """Start a job server for this process's jobs and export its socket (:data:`ENV`).
    Fails open: where it cannot start (a socket path over :data:`SOCKET_PATH_MAX`
    bytes under a long ``TMPDIR``, no usable ``os.pidfd_open``, a bind that fails),
    one warning on standard error, None, and every job runs in its own process."""
    folder = tempfile.mkdtemp(prefix="tlbench-jobs-")
    path = os.path.join(folder, "socket")
    log = os.path.join(folder, "server.log")  # the server's own messages
    process = None
    try:
        if (size := len(os.fsencode(path))) >= SOCKET_PATH_MAX:
            raise RuntimeError(
                f"its socket path {path} is {size} bytes, a Unix socket's "
                f"at most {SOCKET_PATH_MAX - 1} (a shorter TMPDIR avoids this)"
            )
        env = {k: v for k, v in os.environ.items() if k != ENV}
        command = [sys.executable, "-m", "tlbench.workflow.jobserver", path, str(os.getpid())]
        with open(log, "w") as stderr:
            process = subprocess.Popen(
                [*command, *preload],
                env=env,
                stdin=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,  # Ctrl-C reaches Snakemake, which stops it
            )
        deadline = time.monotonic() + START_SECONDS
        while not os.path.exists(path):  # published once the imports are done
            if process.poll() is not None:
                said = Path(log).read_text().strip().splitlines()
                raise RuntimeError(said[-1] if said else f"it exited with {process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no socket at {path} after {START_SECONDS:.0f} s")
            time.sleep(0.02)
    except Exception as error:
        _stop(process, path)
        os.environ.pop(ENV, None)  # no stale server for the jobs either
        print(
            f"tlbench: warning: the job server did not start: {error}; every job runs in "
            "its own process (Keras imported per job)",
            file=sys.stderr,
            flush=True,
        )
        return None
    os.environ[ENV] = path
    return process


def stop(process: subprocess.Popen | None) -> None:
    """Stop the job server started by :func:`start` (its jobs' children too)."""
    _stop(process, os.environ.pop(ENV, None))


def _stop(process: subprocess.Popen | None, path: str | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(2 * KILL_GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if path:
        folder = os.path.dirname(path)
        for name in (path, os.path.join(folder, "server.log")):
            with contextlib.suppress(OSError):
                os.unlink(name)
        with contextlib.suppress(OSError):
            os.rmdir(folder)


if __name__ == "__main__":  # python -m tlbench.workflow.jobserver SOCKET PARENT_PID [MODULE ...]
    serve(sys.argv[1], sys.argv[3:], int(sys.argv[2]))
