"""A module imported on its first attribute access, not when the importer is imported.

``from tlbench.core.lazy import keras`` in a module that uses Keras only inside its
functions (:mod:`tlbench.strategies`) lets the parse-time check of a study
(:func:`tlbench.study.load.load_study`, run by every ``snakemake`` start) import that
module, and read its classes' names and parameters, without importing Keras and
TensorFlow (several seconds on a small CPU).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for module ``name``; attribute access imports it (once) and reads from it."""

    def __init__(self, name: str):
        self._name = name

    def _module(self) -> ModuleType:
        return importlib.import_module(self._name)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._module(), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


keras = LazyModule("keras")
