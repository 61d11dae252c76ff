"""The names the parse-time check needs, without importing Keras or TensorFlow.

:func:`tlbench.training.spec.resolve_spec` checks backbone and augmentation names against
their registries (:data:`tlbench.models.backbones.base.BACKBONES`,
:data:`tlbench.models.augment.AUGMENTATIONS`); importing those builds Keras layers, so
it imports Keras and TensorFlow. :func:`registry` gives the real registry when
its module is already imported (a run, a test), else a names-only one:

* backbones: every constructor that the installed ``keras.applications`` exports,
  read from that package's generated ``applications/__init__.py`` without
  importing it (:func:`keras_application_names`), and :data:`CUSTOM_BACKBONES`;
* augmentations: :data:`AUGMENTATIONS`.

``tests/test_names.py`` checks both lists against the real registries, so a
backbone or augmentation added without its name here fails there.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import sys
from pathlib import Path

from tlbench.core.registry import Registry

#: The custom builders registered in :mod:`tlbench.models.backbones`.
CUSTOM_BACKBONES = ("alexnet", "keras_hub", "seed000_cnn", "seed003_cnn", "small_cnn")

#: The presets registered in :mod:`tlbench.models.augment`.
AUGMENTATIONS = (
    "brightness",
    "contrast",
    "flip",
    "geometric",
    "noise",
    "none",
    "random_crop",
    "rotation",
    "seed001",
    "seed003",
    "translation",
    "zoom",
)

_MODULES = {
    "backbone": "tlbench.models.backbones.applications",
    "augmentation": "tlbench.models.augment",
}
_ATTRS = {"backbone": "BACKBONES", "augmentation": "AUGMENTATIONS"}


@functools.cache
def keras_application_names() -> tuple[str, ...]:
    """Model constructors exported by the installed ``keras.applications`` (the
    capitalised names its generated ``__init__.py`` imports), read, not imported."""
    spec = importlib.util.find_spec("keras")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("keras is not installed: no backbone names to check against")
    init = Path(next(iter(spec.submodule_search_locations))) / "applications" / "__init__.py"
    if not init.is_file():
        raise ImportError(f"keras {init.parent} has no applications/__init__.py to read")
    found = set()
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                name = alias.asname or alias.name
                if name[:1].isupper():
                    found.add(name)
    if not found:
        raise ImportError(f"{init} exports no keras.applications model")
    return tuple(sorted(found))


def backbone_names() -> tuple[str, ...]:
    return tuple(sorted({*keras_application_names(), *CUSTOM_BACKBONES}))


def registry(axis: str) -> Registry:
    """The registry of ``axis`` (backbone | augmentation): the real one when its module is
    imported, else one that holds the names only (values None)."""
    module = sys.modules.get(_MODULES[axis])
    if module is not None:
        return getattr(module, _ATTRS[axis])
    names = backbone_names() if axis == "backbone" else AUGMENTATIONS
    out: Registry = Registry(axis)
    for name in names:
        out.add(name, None)
    return out
