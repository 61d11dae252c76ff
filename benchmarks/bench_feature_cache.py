"""Benchmark: feature extraction with the frozen-backbone feature cache vs. without.

Real data and weights: ``--dataset`` (hymenoptera: 220 train images; gtsrb:
35,288) prepared at ``--size`` px and MobileNetV2 alpha 0.35 with ImageNet
weights (``KERAS_HOME`` must hold them, e.g. ``KERAS_HOME=../shared/keras``),
strategy ``feature_extraction``, 10 epochs, no early stopping. Three runs of
the same spec and seed:

* ``images``: the images go through the frozen backbone in every epoch
  (``tlbench.training.trainer.USE_FEATURE_CACHE = False``);
* ``cache cold``: the run computes the cache itself (one pass) and trains the head on it;
* ``cache warm``: the cache already exists (as in the workflow, where
  ``tlbench features`` fills it once for every run and seed of a dataset/backbone).

Prints each run's training time and test accuracy, and the speed-up of the
cached runs (target >= 10x) and their accuracy difference (target <= 1 point).

A warm run's time is Keras's fixed cost per ``fit`` (about 1 s on 2 cores:
tracing, a data iterator per epoch) plus the head's epochs; on 220 images the
fixed cost dominates, so the speed-up grows with the number of images.

    KERAS_HOME=$PWD/../shared/keras python benchmarks/bench_feature_cache.py --size 224
    python benchmarks/bench_feature_cache.py --dataset gtsrb --size 32 --batch-size 128
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from tlbench.models import inputs

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TLBENCH_SHARED", ROOT.parent / "shared"))
# --dataset -> its loader (which reads the official archives from ../shared/datasets/<loader>)
DATASETS = {"hymenoptera": "hymenoptera", "gtsrb": "gtsrb"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="hymenoptera")
    parser.add_argument("--size", type=int, default=160, help="prepared image side (px)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    os.environ.setdefault("KERAS_HOME", str(SHARED / "keras"))
    weights = Path(os.environ["KERAS_HOME"]) / "models"
    if not (
        weights / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
    ).is_file():
        raise SystemExit(f"needs the MobileNetV2 0.35 ImageNet weights in {weights}")

    from tlbench.datasets import prepare
    from tlbench.training import engine, trainer

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-features-"))
    loader = DATASETS[args.dataset]
    prepared = work / f"{args.dataset}-{args.size}"
    if not prepared.exists():
        source = SHARED / "datasets" / loader
        prepare({"loader": loader, "source": str(source)}, prepared, image_size=args.size, seed=0)
    spec = {
        "dataset": {"name": args.dataset, "prepared": str(prepared)},
        "backbone": {"name": "MobileNetV2", "weights": "imagenet", "kwargs": {"alpha": 0.35}},
        "strategy": {"name": "feature_extraction"},
        "seed": 0,
        "training": {"epochs": args.epochs, "batch_size": args.batch_size, "early_stopping": None},
    }
    results = {}
    trainer.USE_FEATURE_CACHE = False
    results["images"] = engine.run(spec, work / "run-images")
    trainer.USE_FEATURE_CACHE = True
    cache = work / "features"
    results["cache cold"] = engine.run({**spec, "features_cache": str(cache)}, work / "run-cold")
    results["cache warm"] = engine.run({**spec, "features_cache": str(cache)}, work / "run-warm")
    assert results["cache cold"]["features"]["source"] == "computed"
    assert results["cache warm"]["features"]["source"] == "cache"

    base = results["images"]
    n_train = len(inputs.load_prepared(prepared).split("train")[1])
    print(
        f"\nfeature_extraction, {args.dataset} {args.size}px "
        f"({n_train} train images), MobileNetV2 a0.35 imagenet, "
        f"{args.epochs} epochs, batch {args.batch_size}, load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    print(f"{'variant':<12} {'train s':>9} {'speed-up':>9} {'test acc':>9} {'diff (pt)':>10}")
    for name, metrics in results.items():
        speed = base["train_seconds"] / metrics["train_seconds"]
        diff = 100 * (metrics["test"]["accuracy"] - base["test"]["accuracy"])
        print(
            f"{name:<12} {metrics['train_seconds']:>9.2f} {speed:>8.1f}x "
            f"{metrics['test']['accuracy']:>9.4f} {diff:>+10.2f}"
        )


if __name__ == "__main__":
    main()
