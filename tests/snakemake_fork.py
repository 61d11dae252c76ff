"""Snakemake's command line for the tests' dry runs, without a fresh interpreter each.

A `snakemake` process spends about half of a dry run importing Snakemake (seconds on
the test machine); the test files run dozens of them. :func:`run` calls the console
script's entry point (``snakemake.cli.main``) in a process forked from a
multiprocessing fork server that has imported Snakemake (and the Snakefile's
``tlbench.study``) once: each call is still its own process (own working directory,
environment, exit status, output), only the imports are shared. The fork server is a
fresh interpreter started on the first call (never a fork of the test process, which
holds TensorFlow's threads).
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

#: What the fork server imports once for every call.
PRELOAD = ["snakemake.cli", "tlbench.study.load"]

_context = None


def _fork_context():
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _main(args: list[str], cwd: str, env: dict[str, str], out: str, err: str) -> None:
    """In the forked process: ``snakemake ARGS`` in ``cwd`` with ``env``, its standard
    output and error written to the files ``out`` and ``err``."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, out), (2, err)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(handle, fd)
        os.close(handle)
    sys.argv = ["snakemake", *args]
    from snakemake.cli import main

    main(args)  # exits with the command's status (multiprocessing records it)


def run(
    args: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess:
    """``snakemake ARGS`` as a completed process (status, text stdout and stderr), like
    ``subprocess.run(..., capture_output=True, text=True, timeout=timeout)``."""
    with tempfile.TemporaryDirectory(prefix="snakemake-fork-") as tmp:
        out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
        process = _fork_context().Process(
            target=_main, args=(list(args), str(cwd), dict(env), str(out), str(err))
        )
        process.start()
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join()
            raise subprocess.TimeoutExpired(["snakemake", *args], timeout)
        return subprocess.CompletedProcess(
            ["snakemake", *args],
            process.exitcode,
            out.read_text(errors="replace"),
            err.read_text(errors="replace"),
        )
