"""How the backend runs a model's steps: the ``training.jit_compile`` setting.

``training.jit_compile`` is ``auto`` (the default), ``true`` or ``false``. It is
passed to ``model.compile(jit_compile=...)`` for every training phase and set on
the feature cache's extractor before its forward pass (:mod:`tlbench.features`).
``auto`` resolves per Keras backend to :data:`AUTO_JIT`, the mode that
``benchmarks/bench_backends.py`` measured fastest among those that agree
numerically (README, "Compiled steps"). Keras's own ``"auto"`` is *not* used: on
a CPU-only TensorFlow it always turns XLA off.

A model with a layer that Keras marks ``supports_jit = False`` (the random
rotation / zoom / translation / crop layers of some augmentations) runs
uncompiled under ``auto``; ``true`` for such a model is an error naming the
layers. :func:`jit_record` is what ``metrics.json`` records
(``environment.jit_compile``).

No Keras import at module level: :mod:`tlbench.spec` validates the setting at
parse time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Valid values of ``training.jit_compile``.
JIT_SETTINGS = ("auto", True, False)

#: What ``auto`` resolves to per Keras backend (benchmarks/bench_backends.py, README
#: "Compiled steps"): TensorFlow without XLA (XLA was slower for both the small CNN and
#: MobileNet on a 2-core CPU), JAX jitted (eager JAX is not a real option), torch eager
#: (not measured; Keras's own choice).
AUTO_JIT = {"tensorflow": False, "jax": True, "torch": False}


def check_jit_setting(value: Any, path: str = "training.jit_compile") -> Any:
    """``value`` if it is a valid ``training.jit_compile`` setting, else a SpecError."""
    from tlbench.errors import SpecError

    if isinstance(value, bool) or value == "auto":
        return value
    raise SpecError(f"{path}: {value!r} is not valid; valid values: auto, true, false")


def jit_setting(setting: Any, backend: str) -> bool:
    """``setting`` (``auto`` | true | false) resolved for Keras backend ``backend``."""
    check_jit_setting(setting)
    if setting != "auto":
        return bool(setting)
    if backend not in AUTO_JIT:
        raise ValueError(
            f"training.jit_compile: auto has no measured mode for backend {backend!r}; "
            f"known backends: {', '.join(AUTO_JIT)} (set true or false)"
        )
    return AUTO_JIT[backend]


def unjittable_layers(model: Any) -> list[str]:
    """Names of ``model``'s (nested) layers that Keras cannot compile with XLA."""
    return [layer.name for layer in model._flatten_layers() if not layer.supports_jit]


def model_jit(model: Any, setting: Any) -> bool:
    """Whether ``model`` runs compiled under ``setting`` on the current backend."""
    import keras

    wanted = jit_setting(setting, keras.backend.backend())
    blocked = unjittable_layers(model) if wanted else []
    if blocked and setting is True:
        raise ValueError(
            "training.jit_compile: true, but these layers cannot be XLA-compiled: "
            + ", ".join(blocked)
            + " (use auto or false)"
        )
    return wanted and not blocked


def compile_options(training: Mapping[str, Any], model: Any) -> dict[str, Any]:
    """Keyword arguments for ``model.compile`` from a resolved spec's ``training``."""
    return {"jit_compile": model_jit(model, training.get("jit_compile", "auto"))}


def set_forward_jit(model: Any, setting: Any) -> Any:
    """Set whether ``model.predict`` (of an uncompiled model) runs XLA-compiled."""
    model.jit_compile = model_jit(model, setting)
    return model


def jit_record(training: Mapping[str, Any], model: Any | None) -> dict[str, Any]:
    """``metrics.json``'s ``environment.jit_compile``: the setting, what it resolves to on
    this backend, and what the final model was compiled with (null when not compiled)."""
    import keras

    setting = training.get("jit_compile", "auto")
    compiled = model is not None and getattr(model, "compiled", False)
    return {
        "setting": setting,
        "resolved": jit_setting(setting, keras.backend.backend()),
        "model": bool(model.jit_compile) if compiled else None,
    }
