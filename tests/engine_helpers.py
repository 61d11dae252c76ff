"""Helpers shared by the engine's tests: tiny run specs on the tiny prepared dataset."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any


class SplitRecorder:
    """A prepared dataset that appends ``("split", name)`` to ``events`` on every
    ``split(name)`` call (which splits a run reads, and when)."""

    def __init__(self, data: Any, events: list):
        self.data, self.events = data, events

    def __getattr__(self, name: str) -> Any:
        return getattr(self.data, name)

    def split(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self.events.append(("split", name))
        return self.data.split(name, *args, **kwargs)


SMALL_BACKBONE = {"name": "small_cnn", "weights": "none", "kwargs": {"widths": [8, 16]}}


def tiny_spec(prepared: Path, strategy: str = "scratch", **overrides: Any) -> dict[str, Any]:
    """A run spec that trains in about a second on the tiny dataset."""
    spec: dict[str, Any] = {
        "dataset": {"name": "tiny", "prepared": str(prepared)},
        "backbone": copy.deepcopy(SMALL_BACKBONE),
        "strategy": {"name": strategy, "params": {}},
        "training": {"epochs": 2, "batch_size": 16, "early_stopping": None},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return spec
