"""Benchmark: the cost model of ``tlbench compare`` (``src/tlbench/study/costs.yaml``).

For each architecture that ``tlbench compare`` may pick (``tlbench.study.defaults.IMAGENET``),
built with random weights (speed does not depend on the weights) at ``--side`` px, measure
on random images:

* ``forward``: seconds per image of a frozen forward pass (inference mode), what a feature
  cache and every evaluation cost;
* ``train``: seconds per image of one training step of the whole network (forward and
  backward, Adam), what one epoch of fine-tuning or training from scratch costs per image.

Each figure is the median of ``--repeats`` timed passes over ``--images`` images after one
warm-up pass, batch 32, TensorFlow limited to ``--threads`` threads. The table is printed as
YAML (``--out`` writes it): the machine and the side are recorded with it, since the
estimate scales with pixels (side squared) from there.

Run: ``PYTHONPATH=src python benchmarks/bench_costs.py --out src/tlbench/study/costs.yaml``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import yaml


def measure(name: str, kwargs: dict, side: int, images: int, repeats: int) -> dict[str, float]:
    import keras  # deferred: the module docstring and --help need no Keras

    fn = getattr(keras.applications, name)
    base = fn(include_top=False, weights=None, input_shape=(side, side, 3), **kwargs)
    x = np.random.default_rng(0).random((images, side, side, 3), dtype=np.float32)
    y = np.random.default_rng(1).integers(0, 2, images)
    pooled = keras.layers.GlobalAveragePooling2D()(base.output)
    model = keras.Model(base.input, keras.layers.Dense(2, activation="softmax")(pooled))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")

    def timed(step) -> float:
        step()  # warm-up: tracing
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        return statistics.median(times) / images

    forward = timed(lambda: base.predict(x, batch_size=32, verbose=0))
    train = timed(lambda: model.fit(x, y, batch_size=32, epochs=1, verbose=0))
    return {"forward": round(forward, 5), "train": round(train, 5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=96)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    parser.add_argument("--only", action="append", default=None, help="measure these keys")
    args = parser.parse_args()
    import tensorflow as tf  # deferred: after argument parsing

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from tlbench.study.defaults import IMAGENET  # deferred: after the thread limits

    seconds = {}
    for entry in IMAGENET:
        if args.only and entry.key not in args.only:
            continue
        seconds[entry.key] = measure(entry.name, entry.kwargs, args.side, args.images, args.repeats)
        print(entry.key, seconds[entry.key], flush=True)
    table = {
        "side": args.side,
        "threads": args.threads,
        "machine": f"{_cpu()}, {args.threads} threads",
        "command": "benchmarks/bench_costs.py",
        "seconds_per_image": seconds,
    }
    if args.out:  # the figures measured otherwise (the workflow's fixed costs) are kept
        out = Path(args.out)
        kept = yaml.safe_load(out.read_text()) if out.exists() else {}
        kept = {k: v for k, v in (kept or {}).items() if k not in table}
        text = yaml.safe_dump({**table, **kept}, sort_keys=False, default_flow_style=None)
        out.write_text(HEADER + text)
    print(yaml.safe_dump(table, sort_keys=False, default_flow_style=None))


HEADER = """\
# The cost model of `tlbench compare` (tlbench.study.compare.estimate). seconds_per_image:
# measured by benchmarks/bench_costs.py (a frozen forward pass; a training step of the whole
# network; random weights, random images, batch 32, at `side` px) on `machine`. The other
# figures were measured on the same machine: workflow_seconds, the workflow's fixed cost
# (Snakemake's start, tables, figures, report), and run_overhead_seconds, one run's fixed cost
# (process, model build, evaluation, writing), from `tlbench compare` on a folder of 60 tiny
# images (5 runs, 5.7 min, the machine shared with other jobs); prepare_seconds_per_image from
# `tlbench prepare` of hymenoptera (398 JPEGs of at most 500 px, 2.0 s). Larger photos take
# longer to decode; a GPU or a quiet machine is faster: the measured time printed by
# `tlbench compare` is the figure to plan by.
"""


def _cpu() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else the machine type."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
