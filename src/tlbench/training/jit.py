"""How the backend runs a model's steps: the ``training.jit_compile`` setting.

``training.jit_compile`` is ``auto`` (the default), ``true`` or ``false``. It is
passed to ``model.compile(jit_compile=...)`` for every training phase and set on
the feature cache's extractor before its forward pass (:mod:`tlbench.training.feature_cache`).
``auto`` resolves per Keras backend through :data:`AUTO_JIT`, the mode that
``benchmarks/bench_backends.py`` measured fastest among those that agree
numerically (docs/development.md, "Compiled steps"): on TensorFlow, XLA for a model with a
standard convolution and no depthwise one (seed 000's small CNN: 1.32x) that
trains on at least :data:`XLA_MIN_IMAGE_EPOCHS` images x epochs in a phase, no
XLA otherwise (MobileNet, whose depthwise convolutions XLA runs at 0.27x on a
2-core CPU; dense heads on cached features; short fits, where compiling the
train, evaluate and predict steps, about 5.5 s for a tiny CNN, costs more than
it saves; the feature cache's forward pass, 1.01x); on JAX always ``jax.jit``.
Keras's own ``"auto"`` is *not* used: on a CPU-only TensorFlow it always turns
XLA off.

A model with a layer that Keras marks ``supports_jit = False`` (the random
rotation / zoom / translation / crop layers of some augmentations) runs
uncompiled under ``auto``; ``true`` for such a model is an error naming the
layers. :func:`jit_record` is what ``metrics.json`` records
(``environment.jit_compile``).

No Keras import at module level: :mod:`tlbench.training.spec` validates the setting at
parse time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tlbench.core.errors import SpecError

#: Valid values of ``training.jit_compile``.
JIT_SETTINGS = ("auto", True, False)


def plain_convolutional(model: Any) -> bool:
    """Whether ``model`` has a standard convolution (Conv1D/2D/3D) and no depthwise or
    separable one: the models XLA trains faster on TensorFlow on a CPU."""
    # deferred: the parse-time check validates the setting without Keras
    import keras

    depthwise = (
        keras.layers.DepthwiseConv1D,
        keras.layers.DepthwiseConv2D,
        keras.layers.SeparableConv1D,
        keras.layers.SeparableConv2D,
    )
    plain = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
    layers = list(model._flatten_layers())
    if any(isinstance(layer, depthwise) for layer in layers):
        return False
    return any(isinstance(layer, plain) for layer in layers)


#: Under ``auto`` on TensorFlow, the least training work (images x epochs of one fit)
#: worth XLA: the small CNN saves about 2.5 ms per image and epoch with it (98.7 ->
#: 130.5 images/s), compiling a tiny CNN's steps costs about 5.5 s
#: (benchmarks/bench_jit_overhead.py; break-even near 2,200 image-epochs); 20,000 keeps
#: the compile time under a sixth of the saving.
XLA_MIN_IMAGE_EPOCHS = 20_000


def xla_pays(model: Any, work: int | None) -> bool:
    """TensorFlow's ``auto``: a plain convolutional model (:func:`plain_convolutional`)
    fitted on at least :data:`XLA_MIN_IMAGE_EPOCHS` images x epochs (``work``; None,
    e.g. a forward pass: no)."""
    return work is not None and work >= XLA_MIN_IMAGE_EPOCHS and plain_convolutional(model)


#: What ``auto`` resolves to per Keras backend: a bool, or a function of the model and
#: the fit's work in images x epochs (benchmarks/bench_backends.py on a quiet 2-core AMD
#: EPYC, docs/development.md "Compiled steps": TensorFlow with XLA 1.32x for the small CNN, 0.27x for
#: MobileNet; JAX jitted, since eager JAX is no real option; torch eager, not measured:
#: Keras's own choice).
AUTO_JIT = {"tensorflow": xla_pays, "jax": True, "torch": False}


def check_jit_setting(value: Any, path: str = "training.jit_compile") -> Any:
    """``value`` if it is a valid ``training.jit_compile`` setting, else a SpecError."""

    if isinstance(value, bool) or value == "auto":
        return value
    raise SpecError(f"{path}: {value!r} is not valid; valid values: auto, true, false")


def jit_setting(
    setting: Any, backend: str, model: Any | None = None, work: int | None = None
) -> bool:
    """``setting`` (``auto`` | true | false) resolved for Keras backend ``backend`` and,
    where :data:`AUTO_JIT` decides by the model, for ``model`` fitted on ``work``
    images x epochs (no model: False)."""
    check_jit_setting(setting)
    if setting != "auto":
        return bool(setting)
    if backend not in AUTO_JIT:
        raise ValueError(
            f"training.jit_compile: auto has no measured mode for backend {backend!r}; "
            f"known backends: {', '.join(AUTO_JIT)} (set true or false)"
        )
    rule = AUTO_JIT[backend]
    if callable(rule):
        return model is not None and bool(rule(model, work))
    return rule


def unjittable_layers(model: Any) -> list[str]:
    """Names of ``model``'s (nested) layers that Keras cannot compile with XLA."""
    return [layer.name for layer in model._flatten_layers() if not layer.supports_jit]


def model_jit(model: Any, setting: Any, work: int | None = None) -> bool:
    """Whether ``model`` runs compiled under ``setting`` on the current backend, fitted
    on ``work`` images x epochs (None: not a fit, e.g. a forward pass)."""
    # deferred: the parse-time check validates the setting without Keras
    import keras

    wanted = jit_setting(setting, keras.backend.backend(), model, work)
    blocked = unjittable_layers(model) if wanted else []
    if blocked and setting is True:
        raise ValueError(
            "training.jit_compile: true, but these layers cannot be XLA-compiled: "
            + ", ".join(blocked)
            + " (use auto or false)"
        )
    return wanted and not blocked


def compile_options(
    training: Mapping[str, Any], model: Any, work: int | None = None
) -> dict[str, Any]:
    """Keyword arguments for ``model.compile`` from a resolved spec's ``training``, for a
    fit on ``work`` images x epochs."""
    return {"jit_compile": model_jit(model, training.get("jit_compile", "auto"), work)}


def set_forward_jit(model: Any, setting: Any) -> Any:
    """Set whether ``model.predict`` (of an uncompiled model) runs XLA-compiled."""
    model.jit_compile = model_jit(model, setting)
    return model


def jit_record(training: Mapping[str, Any], model: Any | None) -> dict[str, Any]:
    """``metrics.json``'s ``environment.jit_compile``: the setting, what it resolved to
    for the final model's last fit (without a compiled model: for no model) and what
    that model was compiled with (null when not compiled)."""
    # deferred: the parse-time check validates the setting without Keras
    import keras

    setting = training.get("jit_compile", "auto")
    compiled = model is not None and getattr(model, "compiled", False)
    model_mode = bool(model.jit_compile) if compiled else None
    return {
        "setting": setting,
        "resolved": model_mode if compiled else jit_setting(setting, keras.backend.backend()),
        "model": model_mode,
    }
