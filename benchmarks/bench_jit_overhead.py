"""Benchmark: what XLA compilation costs a short fit on TensorFlow.

A tiny CNN (two 3x3 convolutions of widths 8 and 16 at 16 px, the size of the tests'
runs) is fitted for 2 epochs on 64 random images with validation, then evaluated and
used to predict, compiled with and without ``jit_compile`` (each twice, alternating).
The difference is what compiling the train, evaluate and predict steps costs, the
fixed price that ``tlbench.training.jit.XLA_MIN_IMAGE_EPOCHS`` weighs against XLA's
per-image saving (benchmarks/bench_backends.py).

    python benchmarks/bench_jit_overhead.py [--out benchmarks/results]

Writes ``OUT/bench_jit_overhead.json`` (atomically): the CPU, the load average and
the seconds of each repetition.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def tiny_cnn():
    import keras

    inputs = keras.Input((16, 16, 3))
    x = inputs
    for width in (8, 16):
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def short_fit_seconds(jit: bool) -> float:
    """Seconds of a 2-epoch fit with validation, an evaluate and a predict."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.random((64, 16, 16, 3), dtype=np.float32)
    y = rng.integers(0, 3, 64)
    model = tiny_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=jit)
    start = time.perf_counter()
    model.fit(x, y, validation_data=(x, y), epochs=2, batch_size=16, verbose=0)
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    from tlbench.core.atomic import write_json
    from tlbench.core.provenance import environment

    runs = {"xla": [], "no_xla": []}
    for jit in (False, True, False, True):
        runs["xla" if jit else "no_xla"].append(round(short_fit_seconds(jit), 3))
    overhead = min(runs["xla"]) - min(runs["no_xla"])
    env = environment()
    result = {
        "cpu": env.get("cpu"),
        "cpu_count": env.get("cpu_count"),
        "load_average_1min": os.getloadavg()[0],
        "seconds": runs,
        "compile_overhead_seconds": round(overhead, 3),
    }
    write_json(args.out / "bench_jit_overhead.json", result)
    print(f"short fit: {min(runs['no_xla']):.2f} s without XLA, {min(runs['xla']):.2f} s with")
    print(
        f"XLA compile overhead {overhead:.2f} s on {result['cpu']} (load {result['load_average_1min']:.2f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
