"""Benchmark: the engine's training throughput vs. a bare ``model.fit`` on arrays.

One process, the same architecture (``small_cnn`` from scratch on a generated
32x32 dataset, as for GTSRB), the same batch size: the engine's
:class:`tlbench.training.trainer.Trainer` reading uint8 memmaps through
:class:`tlbench.models.inputs.ImageBatches` (per-epoch shuffling, uint8 -> float32 per
batch, schedule / history / NaN / early-stopping callbacks) against
``model.fit(x_float32, y, shuffle=True)`` on in-memory arrays with no callbacks.
The first epoch (tracing) is left out. Prints images/s of both and their ratio
(target >= 0.9).

    python benchmarks/bench_throughput.py [--per-class 400] [--epochs 4]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from tlbench.models import assembly, inputs
from tlbench.training.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="alternating repeats of both")
    args = parser.parse_args()

    import keras
    import numpy as np

    from tlbench.datasets import load_prepared, make_tiny_prepared
    from tlbench.strategies.base import STRATEGIES, Phase
    from tlbench.training.callbacks import EpochTimer
    from tlbench.training.spec import resolve_spec

    work = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    prepared = make_tiny_prepared(
        work / "data", num_classes=args.classes, size=32, per_class=args.per_class
    )
    data = load_prepared(prepared)
    x_train, y_train = data.split("train")
    x_val, y_val = data.split("val")
    spec = resolve_spec(
        {
            "dataset": {"prepared": str(prepared)},
            "backbone": {"name": "small_cnn", "weights": "none"},
            "strategy": {"name": "scratch"},
            "training": {"epochs": args.epochs, "batch_size": args.batch_size},
        }
    )
    spec["training"]["input_size"] = 32
    strategy = STRATEGIES.get("scratch")({})
    phase = Phase("train", args.epochs, spec["training"]["learning_rate"])

    def build():
        keras.utils.set_random_seed(0)
        return assembly.build_model(spec, strategy, tuple(x_train.shape[1:]), data.num_classes)

    def engine_rate() -> float:
        built = build()
        trainer = Trainer(spec)
        trainer.fit(
            built.model,
            phase,
            inputs.ImageBatches(x_train, y_train, args.batch_size, shuffle=True, seed=0),
            inputs.ImageBatches(x_val, y_val, args.batch_size),
        )
        seconds = sum(row["seconds"] for row in trainer.rows[1:])
        return len(x_train) * (len(trainer.rows) - 1) / seconds

    xf, yf = np.asarray(x_train, np.float32), np.asarray(y_train)
    xv, yv = np.asarray(x_val, np.float32), np.asarray(y_val)

    def bare_rate() -> float:
        model = build().model
        model.compile(
            optimizer=keras.optimizers.Adam(spec["training"]["learning_rate"]),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        timer = EpochTimer()
        model.fit(
            xf,
            yf,
            batch_size=args.batch_size,
            epochs=args.epochs,
            shuffle=True,
            validation_data=(xv, yv),
            callbacks=[timer],
            verbose=2,
        )
        return len(xf) * (len(timer.seconds) - 1) / sum(timer.seconds[1:])

    rates: dict[str, list[float]] = {"engine": [], "bare": []}
    for _ in range(args.repeats):
        rates["bare"].append(bare_rate())
        rates["engine"].append(engine_rate())
    engine_best, bare_best = max(rates["engine"]), max(rates["bare"])
    print(
        f"\nsmall_cnn scratch, {len(x_train)} train images 32x32, batch {args.batch_size}, "
        f"backend {keras.backend.backend()}, load average {os.getloadavg()[0]:.2f} "
        f"on {os.cpu_count()} CPUs"
    )
    print(
        f"engine (memmap PyDataset + callbacks): {engine_best:8.1f} images/s  "
        f"(runs: {', '.join(f'{r:.1f}' for r in rates['engine'])})"
    )
    print(
        f"bare model.fit on arrays:              {bare_best:8.1f} images/s  "
        f"(runs: {', '.join(f'{r:.1f}' for r in rates['bare'])})"
    )
    print(f"ratio engine / bare: {engine_best / bare_best:.3f} (target >= 0.9)")


if __name__ == "__main__":
    main()
