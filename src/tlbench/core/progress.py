"""Progress of a long loop a person may watch: a bar on a terminal, plain lines in a log.

:func:`progress` wraps a count of steps (images decoded, ...). On a terminal (the stream is
a TTY) it draws a `rich <https://rich.readthedocs.io>`_ progress bar; otherwise (a
Snakemake job's log, a pipe) it writes one plain line at every tenth of the way and at the
end (``preparing train: 500/5000 images (10 %)``), so a log shows how far it got without
a line per step. Loops of fewer than :data:`MIN_STEPS` steps show nothing: they end before
either helps.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

#: Fewer steps than this show no progress.
MIN_STEPS = 200
#: Plain lines are written at every this fraction of the way.
LINE_EVERY = 0.1


class _Lines:
    """Plain progress lines at every :data:`LINE_EVERY` of ``total``."""

    def __init__(self, label: str, total: int, unit: str, stream: IO[str]):
        self.label, self.total, self.unit, self.stream = label, total, unit, stream
        self.done, self.next_line = 0, 0

    def advance(self, steps: int = 1) -> None:
        self.done += steps
        if self.done >= self.next_line or self.done == self.total:
            percent = 100 * self.done // self.total
            print(
                f"{self.label}: {self.done}/{self.total} {self.unit} ({percent} %)",
                file=self.stream,
                flush=True,
            )
            step = max(1, int(self.total * LINE_EVERY))
            self.next_line = (self.done // step + 1) * step


class _Bar:
    """A rich progress bar on a terminal."""

    def __init__(self, bar, task) -> None:
        self.bar, self.task = bar, task

    def advance(self, steps: int = 1) -> None:
        self.bar.advance(self.task, steps)


class _Silent:
    def advance(self, steps: int = 1) -> None:
        pass


@contextmanager
def progress(
    label: str, total: int, unit: str = "images", stream: IO[str] | None = None
) -> Iterator[_Lines | _Bar | _Silent]:
    """A progress display of ``total`` steps; call ``.advance()`` after each."""
    stream = sys.stderr if stream is None else stream
    if total < MIN_STEPS:
        yield _Silent()
        return
    if not stream.isatty():
        yield _Lines(label, total, unit, stream)
        return
    # deferred: rich is needed only when a person watches a terminal
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(file=stream), transient=False) as bar:
        yield _Bar(bar, bar.add_task(f"{label} ({unit})", total=total))
