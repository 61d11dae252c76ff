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

from tlbench.workflow.jobserver import ENV, import_key

# ---------------------------------------------------------------- the job's side


def delegate() -> None:
    """Run this job in a process forked by the job server, if one serves it, and exit
    with that process's status; return (the job runs here) when there is no server
    (:data:`ENV` unset) or it cannot serve this job (the reason on standard error)."""
    path = os.environ.get(ENV)
    if not path:
        return
    request = {
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "key": import_key(os.environ),
    }
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        conn.connect(path)
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
