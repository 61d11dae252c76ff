"""What a run cost: forward FLOPs per image, images seen, throughput, memory, wall and CPU time.

:func:`forward_flops` counts the trained classifier's forward pass on one image with
XLA's own counter (``HloCostAnalysis``) on the function the backend hands XLA, not a
per-layer formula:

* JAX: ``jax.jit(stateless_call).lower(...).cost_analysis()["flops"]``
  (method ``xla_cost_analysis/jax``);
* TensorFlow: the HLO of ``tf.function(model, jit_compile=True)``
  (``experimental_get_compiler_ir(spec)(stage="hlo")``) counted by the same XLA pass,
  reached through jaxlib's binding (``hlo_module_from_text`` and
  ``hlo_module_cost_analysis``; method ``xla_cost_analysis/tensorflow``).

Both count the HLO before XLA's optimisation passes (the model's arithmetic, not this
machine's fusion choices). XLA's convention (:data:`FLOPS_CONVENTION`): a dot or a
convolution counts 2 per multiply-add (a Dense 10 -> 5 layer: 2 x 10 x 5 = 100, plus 5
for its bias; a ``same`` convolution's taps on the zero padding are not counted), an elementwise operation 1 per output element, a transcendental one
(exp, tanh) counts in XLA's separate ``transcendentals`` and not here. A backend or a
model XLA cannot lower gives ``forward_flops: null`` with ``flops_note`` saying why,
never an estimate.

:class:`RunMeter` measures the process around one run: wall and CPU seconds
(``time.process_time``: this process's user + system time over all its threads, plus its
finished children's from ``os.times``), peak resident memory (``ru_maxrss``: the
process's peak so far; ``peak_rss_mb_at_start`` is the same reading at the run's start,
so a run that did not raise it shows equal numbers) and, on a GPU, the device's peak
memory (null with a note on a CPU).

:func:`images_seen` is the training work in images: passes over the training split
times its images; ``flops_seen`` = forward FLOPs x images seen is the machine-free
training cost the verdict's cheapest cell uses by default (``verdict.cost``).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

#: How :func:`forward_flops` counts (recorded as ``flops_convention``).
FLOPS_CONVENTION = (
    "XLA HloCostAnalysis of the forward pass on one image in inference mode: 2 per "
    "multiply-add of a dot or convolution (a convolution's taps on its zero padding not "
    "counted), 1 per output element of an elementwise op; transcendentals not counted"
)
#: Memory is in MB of 2**20 bytes.
MB = 1024.0 * 1024.0


def forward_flops(model: Any, image_shape: tuple[int, ...]) -> dict[str, Any]:
    """Forward FLOPs per image of ``model`` (one ``image_shape`` input, float32) by XLA's
    cost analysis on the current Keras backend: ``forward_flops`` (a number, or None),
    ``flops_method`` and, when None, ``flops_note`` (why)."""
    # deferred: this module is imported by the engine only; Keras is loaded already there
    import keras

    backend = keras.backend.backend()
    shape = (1, *(int(s) for s in image_shape))
    counters = {"jax": _jax_flops, "tensorflow": _tensorflow_flops}
    if backend not in counters:
        return _no_flops(None, f"no XLA cost analysis on the {backend} backend")
    method = f"xla_cost_analysis/{backend}"
    try:
        flops = counters[backend](model, shape)
    except Exception as error:  # noqa: BLE001 -- recorded: the count is null, the reason kept
        # the last line: TensorFlow puts the traced code's frames before the cause
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        return _no_flops(method, f"{type(error).__name__}: {(lines or [''])[-1][:300]}")
    if flops is None or not flops >= 0:
        return _no_flops(method, f"XLA's cost analysis gave no flops ({flops!r})")
    return {
        "forward_flops": float(flops),
        "flops_method": method,
        "flops_convention": FLOPS_CONVENTION,
    }


def _no_flops(method: str | None, note: str) -> dict[str, Any]:
    return {"forward_flops": None, "flops_method": method, "flops_note": note}


def _jax_flops(model: Any, shape: tuple[int, ...]) -> float | None:
    # deferred: JAX is imported only on the JAX backend
    import jax

    def forward(trainable, non_trainable, x):
        return model.stateless_call(trainable, non_trainable, x, training=False)[0]

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    lowered = jax.jit(forward).lower(
        trainable, non_trainable, jax.ShapeDtypeStruct(shape, "float32")
    )
    return _flops_of(lowered.cost_analysis())


def _tensorflow_flops(model: Any, shape: tuple[int, ...]) -> float | None:
    # deferred: TensorFlow and jaxlib are imported only on the TensorFlow backend
    import jax
    import tensorflow as tf
    from jaxlib import _hlo, _jax

    function = tf.function(lambda x: model(x, training=False), jit_compile=True)
    hlo = function.experimental_get_compiler_ir(tf.TensorSpec(shape, tf.float32))(stage="hlo")
    module = _hlo.hlo_module_from_text(hlo)
    return _flops_of(_jax.hlo_module_cost_analysis(jax.devices("cpu")[0].client, module))


def _flops_of(analysis: Any) -> float | None:
    """``flops`` of a cost analysis: a dict, or (older JAX) a list of one dict."""
    if isinstance(analysis, list | tuple):
        analysis = analysis[0] if analysis else None
    return None if not analysis else analysis.get("flops")


def images_seen(train_images: int, epochs_run: int, cached_features: bool) -> dict[str, Any]:
    """The training work in images: ``train_passes`` over the training split, times its
    ``train_images``. A head fitted on cached features (or a strategy that trains no
    epoch, such as the linear probe) passed the training images through the model once:
    one pass."""
    passes = 1 if cached_features or epochs_run < 1 else int(epochs_run)
    return {
        "train_images": int(train_images),
        "train_passes": passes,
        "train_images_seen": int(train_images) * passes,
    }


def training_record(
    seen: dict[str, Any], train_seconds: float, flops: dict[str, Any]
) -> dict[str, Any]:
    """Training images per second and ``flops_seen`` (forward FLOPs x images seen;
    None when the FLOPs are)."""
    per_image = flops.get("forward_flops")
    return {
        "train_images_per_second": (
            round(seen["train_images_seen"] / train_seconds, 2) if train_seconds > 0 else None
        ),
        "flops_seen": None if per_image is None else float(per_image) * seen["train_images_seen"],
    }


def _peak_rss_mb() -> float | None:
    try:
        import resource  # deferred: Unix only; elsewhere the peak is null
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes
    return round(peak / (MB if sys.platform == "darwin" else 1024.0), 1)


def _children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


@dataclass
class RunMeter:
    """Wall, CPU and memory of the process from :meth:`start` to :meth:`finish`."""

    wall: float = field(default_factory=time.perf_counter)
    cpu: float = field(default_factory=time.process_time)
    children: float = field(default_factory=_children_cpu)
    rss_at_start: float | None = field(default_factory=_peak_rss_mb)

    @classmethod
    def start(cls) -> RunMeter:
        _reset_device_peak()
        return cls()

    def finish(self) -> dict[str, Any]:
        """``wall_seconds``, ``cpu_seconds`` (this process and its finished children),
        ``peak_rss_mb``, ``peak_rss_mb_at_start``, ``device_peak_memory_mb`` (and
        ``device_memory_note`` when null)."""
        cpu = time.process_time() - self.cpu + _children_cpu() - self.children
        record: dict[str, Any] = {
            "wall_seconds": round(time.perf_counter() - self.wall, 3),
            "cpu_seconds": round(cpu, 3),
            "peak_rss_mb": _peak_rss_mb(),
            "peak_rss_mb_at_start": self.rss_at_start,
        }
        device, note = _device_peak_mb()
        record["device_peak_memory_mb"] = device
        if note:
            record["device_memory_note"] = note
        return record


def _reset_device_peak() -> None:
    """Reset TensorFlow's GPU peak counter (JAX's cannot be reset: its peak is the
    process's)."""
    # deferred: the backend is imported by the engine already
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # deferred: only on the TensorFlow backend

        for index, _ in enumerate(tf.config.list_logical_devices("GPU")):
            tf.config.experimental.reset_memory_stats(f"GPU:{index}")


def _device_peak_mb() -> tuple[float | None, str]:
    """Peak memory on the first GPU in MB, or None and why."""
    # deferred: the backend is imported by the engine already
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # deferred: only on the TensorFlow backend

        if not tf.config.list_logical_devices("GPU"):
            return None, "no GPU"
        return round(tf.config.experimental.get_memory_info("GPU:0")["peak"] / MB, 1), ""
    if backend == "jax":
        import jax  # deferred: only on the JAX backend

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        if not gpus:
            return None, "no GPU"
        stats = gpus[0].memory_stats() or {}
        if "peak_bytes_in_use" not in stats:
            return None, "the JAX device reports no peak_bytes_in_use"
        return round(stats["peak_bytes_in_use"] / MB, 1), "JAX's peak of the whole process"
    return None, f"no device memory reading on the {backend} backend"
