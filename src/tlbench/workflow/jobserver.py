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
sources changed since the server imported them, or a preloaded module started a
backend's runtime (:func:`runtime_started`: a fork could then hang). A job killed
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
import ctypes
import importlib
import importlib.util
import json
import os
import runpy
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
#: Seconds a killed job's child gets between SIGTERM and SIGKILL.
KILL_GRACE = 5.0


def import_key(env: Mapping[str, str]) -> dict[str, Any]:
    """What must be equal between a job and the server for the job to run forked:
    the interpreter and the environment variables read at import time."""
    return {
        "executable": sys.executable,
        "prefix": sys.prefix,
        "env": {k: v for k, v in env.items() if k.startswith(KEY_PREFIXES) and k not in PER_JOB},
    }


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


# ---------------------------------------------------------------- the server's side


def _die_with_parent(server: int) -> None:
    """Have the kernel kill this process when its parent, the server (pid ``server``),
    dies (Linux's PR_SET_PDEATHSIG), so that a job never outlives the server that
    answers for it."""

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != server:  # the server died before the call
        os._exit(1)


def _child(
    request: dict[str, Any], fds: list[int], server_fds: Iterable[int], path: str, server: int
):
    """In the forked process of server ``server``: become the job and run its script;
    never returns."""
    code = 1
    try:
        os.setsid()  # its own process group: killed as a whole with the job
        _die_with_parent(server)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        for fd in server_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        env = {k: v for k, v in request["env"].items() if k != ENV}
        env[FORKED_ENV] = path
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


class Server:
    """The job server's loop: one selector over the listening socket, the jobs'
    connections and their children (pidfds); single-threaded, so a fork never copies
    a lock held by another thread."""

    def __init__(self, path: str, parent: int | None = None):
        self.path = path
        self.parent = os.getppid() if parent is None else parent
        self.key = import_key(os.environ)
        self.sources = sources_fingerprint()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(path)
        self.listener.listen(64)
        self.selector = selectors.EpollSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, ("accept", None))
        self.children: dict[int, tuple[socket.socket, int]] = {}  # pid -> (conn, pidfd)
        self.stopping = False
        self.unsafe: str | None = None  # why no job may be forked (runtime_started)

    def _refusal(self, request: Any) -> str | None:
        if self.unsafe:
            return self.unsafe
        if not isinstance(request, dict) or not {"argv", "cwd", "env", "key"} <= set(request):
            return "a malformed request"
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
        self.selector.register(conn, selectors.EVENT_READ, ("request", None))

    def _request(self, conn: socket.socket) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(conn, MAX_MESSAGE, 3)
        except OSError:
            data, fds = b"", []
        self.selector.unregister(conn)
        try:
            request = json.loads(data) if data else None
        except ValueError:
            request = None
        refusal = "no request" if not data else self._refusal(request)
        if refusal is None and len(fds) != 3:
            refusal = "the job's standard streams did not arrive"
        if refusal is not None:
            for fd in fds:
                os.close(fd)
            with contextlib.suppress(OSError):
                conn.send(refusal.encode())
            conn.close()
            return
        sys.stdout.flush()
        sys.stderr.flush()
        server_fds = [self.listener.fileno(), self.selector.fileno(), conn.fileno()]
        for other, pidfd in self.children.values():
            server_fds += [other.fileno(), pidfd]
        server = os.getpid()
        pid = os.fork()
        if pid == 0:
            _child(request, fds, server_fds, self.path, server)
        for fd in fds:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        self.children[pid] = (conn, pidfd)
        self.selector.register(conn, selectors.EVENT_READ, ("gone", pid))
        self.selector.register(pidfd, selectors.EVENT_READ, ("exited", pid))

    def _exited(self, pid: int) -> None:
        conn, pidfd = self.children.pop(pid)
        _, status = os.waitpid(pid, 0)
        with contextlib.suppress(KeyError):  # already unregistered when the job was killed
            self.selector.unregister(conn)
        self.selector.unregister(pidfd)
        os.close(pidfd)
        with contextlib.suppress(OSError):
            conn.send(f"exit {os.waitstatus_to_exitcode(status) % 256}".encode())
        conn.close()

    def _gone(self, pid: int) -> None:
        """The job's connection closed before its child exited: the job was killed."""
        conn, _ = self.children[pid]
        self.selector.unregister(conn)
        self._kill([pid])

    def _kill(self, pids: list[int]) -> None:
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

    def serve_forever(self) -> None:
        def stop(signum, frame):
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            while not self.stopping:
                for item, _ in self.selector.select(timeout=1.0):
                    what, pid = item.data
                    if what == "accept":
                        self._accept()
                    elif what == "request":
                        self._request(item.fileobj)
                    elif what == "exited":
                        self._exited(pid)
                    elif what == "gone" and pid in self.children:
                        self._gone(pid)
                if os.getppid() != self.parent:  # the workflow's process is gone
                    break
        finally:
            self.close()

    def close(self) -> None:
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        children = list(self.children)
        self._kill(children)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def serve(path: str, preload: Iterable[str] = PRELOAD, parent: int | None = None) -> None:
    """Bind ``path``, import ``preload``, then serve jobs until stopped (see the module
    docstring). Jobs that connect while the imports run wait for them."""
    server = Server(path, parent)
    for module in preload:
        importlib.import_module(module)
    server.unsafe = runtime_started()
    server.serve_forever()


# ---------------------------------------------------------------- the workflow's side


def start(preload: Iterable[str] = PRELOAD) -> subprocess.Popen:
    """Start a job server for this process's jobs and export its socket (:data:`ENV`)."""
    folder = tempfile.mkdtemp(prefix="tlbench-jobs-")
    path = os.path.join(folder, "socket")
    env = {k: v for k, v in os.environ.items() if k != ENV}
    process = subprocess.Popen(
        [sys.executable, "-m", "tlbench.workflow.jobserver", path, str(os.getpid()), *preload],
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C reaches Snakemake, which stops it
    )
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            raise RuntimeError(f"the tlbench job server did not start (socket {path})")
        time.sleep(0.02)
    os.environ[ENV] = path
    return process


def stop(process: subprocess.Popen | None) -> None:
    """Stop the job server started by :func:`start` (its jobs' children too)."""
    path = os.environ.pop(ENV, None)
    if process is None:
        return
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(KILL_GRACE * 2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if path:
        with contextlib.suppress(OSError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(path))


if __name__ == "__main__":  # python -m tlbench.workflow.jobserver SOCKET PARENT_PID [MODULE ...]
    serve(sys.argv[1], sys.argv[3:], int(sys.argv[2]))
