"""What every figure shares: the PNG writer (:func:`save_figure`, atomic), a figure that
says why there is nothing to draw (:func:`message_figure`), short axis labels.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from tlbench.core.atomic import atomic_file

DPI = 100


# --------------------------------------------------------------------------- helpers


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically and return the path."""
    path = Path(path)
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=DPI, bbox_inches="tight")
    fig.clear()
    return path


def phase_boundaries(phases: Sequence[Any]) -> list[tuple[float, Any]]:
    """``(x, next phase)`` where the phase changes; x sits between epochs (1-based x axis)."""
    return [
        (i + 0.5, phases[i]) for i in range(1, len(phases)) if str(phases[i]) != str(phases[i - 1])
    ]


def message_figure(path: str | os.PathLike, title: str, lines: Sequence[str]) -> Path:
    """A figure that states in words why there is nothing to plot (e.g. a failed run)."""
    fig = Figure(figsize=(6, 2 + 0.3 * len(lines)))
    ax = fig.subplots()
    ax.axis("off")
    ax.set_title(title)
    text = "\n".join(textwrap.fill(line, 90) for line in lines)
    ax.text(0.0, 1.0, text, va="top", ha="left", family="monospace", fontsize=8)
    return save_figure(fig, path)


def short_name(name: Any, width: int = 18) -> str:
    """A class name cut to ``width`` characters for tight labels."""
    name = str(name)
    return name if len(name) <= width else name[: width - 1] + "…"
