"""Helpers of the workflow's job scripts: a job's log (:func:`log_to`), its thread limit
(:func:`limit_threads`) and the stem of the tables it writes (:func:`table_stem`). Every
job script imports this module: it imports no Keras, pandas or matplotlib.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def log_to(path: str | os.PathLike) -> Iterator[None]:
    """Send this process's stdout and stderr (also of C/C++ libraries) to ``path``.

    Used by the workflow's scripts so each job's output, and the traceback of
    an error, lands in its log file.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_fds = os.dup(1), os.dup(2)
    saved_streams = sys.stdout, sys.stderr
    with open(path, "w", buffering=1) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = log
        try:
            yield
        except BaseException:
            traceback.print_exc()  # into the log, then Snakemake reports the failure
            raise
        finally:
            log.flush()
            sys.stdout, sys.stderr = saved_streams
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            os.close(saved_fds[0])
            os.close(saved_fds[1])


def table_stem(outputs: Mapping[str, Any]) -> Path:
    """The path stem of a table's outputs ``csv``, ``md``, ``html`` (they must agree)."""
    stems = {Path(outputs[fmt]).with_suffix("") for fmt in ("csv", "md", "html")}
    if len(stems) != 1:
        raise ValueError(
            f"a table's csv, md and html outputs differ in stem: {sorted(map(str, stems))}"
        )
    return stems.pop()


def limit_threads(threads: int) -> None:
    """Cap the numeric libraries' thread pools at ``threads``: through the environment
    before they are loaded, and, for those already loaded (in a job forked by the job
    server, :mod:`tlbench.workflow.jobserver`, numpy's BLAS), through threadpoolctl."""
    n = str(max(1, int(threads)))
    for var in (
        "OMP_NUM_THREADS",
        "TF_NUM_INTRAOP_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
    ):
        os.environ[var] = n
    os.environ["TF_NUM_INTEROP_THREADS"] = "1" if n == "1" else "2"
    os.environ.setdefault(
        "XLA_FLAGS", f"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={n}"
    )
    if "numpy" in sys.modules:
        # deferred: every job script imports this module before it is forked
        from threadpoolctl import threadpool_limits

        threadpool_limits(int(n))
