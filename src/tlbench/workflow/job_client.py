"""The job's side of the job server (tlbench.workflow.jobserver): a Snakemake job script
hands its argv, cwd, environment and streams to the server, which forks it, and exits
with its status (:func:`delegate`); where the server cannot take it, the job runs in its
own process, saying why.
"""

from __future__ import annotations

import json
import os
import socket
import sys

from tlbench.workflow.job_fork import peer_uid
from tlbench.workflow.jobserver import ENV, import_key

# ---------------------------------------------------------------- the job's side


def snakemake_runtime() -> float | None:
    """The running Snakemake job's ``runtime`` resource in minutes (the job script's
    ``snakemake`` object), None when it has none."""
    job = getattr(sys.modules.get("__main__"), "snakemake", None)
    resources = getattr(job, "resources", None)
    runtime = resources.get("runtime") if hasattr(resources, "get") else None
    if isinstance(runtime, bool) or not isinstance(runtime, int | float) or not runtime > 0:
        return None
    return float(runtime)


def delegate() -> None:
    """Run this job in a process forked by the job server, if one serves it, and exit
    with that process's status; return (the job runs here) when there is no server
    (:data:`ENV` unset) or it cannot serve this job (the reason on standard error).
    The server kills a forked job that runs past the job's Snakemake ``runtime``
    (:func:`snakemake_runtime`); a server of another user is not handed the job."""
    path = os.environ.get(ENV)
    if not path:
        return
    request = {
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "key": import_key(os.environ),
        "runtime_minutes": snakemake_runtime(),
    }
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        conn.connect(path)
        uid = peer_uid(conn)
        if uid != os.getuid():  # SO_PEERCRED: our environment and streams stay ours
            conn.close()
            print(
                f"tlbench job server at {path} runs as uid {uid}, not this job's uid "
                f"{os.getuid()}; the job runs in its own process",
                file=sys.stderr,
                flush=True,
            )
            return
        sys.stdout.flush()
        sys.stderr.flush()
        socket.send_fds(conn, [json.dumps(request).encode()], [0, 1, 2])
    except OSError as error:
        print(
            f"tlbench job server at {path}: {error}; the job runs in its own process",
            file=sys.stderr,
            flush=True,
        )
        return
    try:
        reply = conn.recv(4096).decode()
    except OSError:
        reply = ""
    if reply.startswith("exit "):
        os._exit(int(reply.split()[1]))
    if reply.startswith("timeout "):
        print(
            f"tlbench job server: the job ran past its runtime of {reply.split()[1]} min "
            "(its Snakemake resource runtime) and was killed",
            file=sys.stderr,
            flush=True,
        )
        os._exit(1)
    if not reply:  # the job was handed over, then the server died (and the job with it)
        print(
            f"tlbench job server at {path} ended while running this job; the job failed",
            file=sys.stderr,
            flush=True,
        )
        os._exit(1)
    print(
        f"tlbench job server: {reply}; the job runs in its own process",
        file=sys.stderr,
        flush=True,
    )
