"""Benchmark: the ``linear_probe`` strategy against ``feature_extraction`` on the same
frozen features (issue 19's acceptance).

Hymenoptera (the official ants/bees archive from ../shared) prepared at ``--size`` px
(default 224), MobileNetV2 alpha 0.35 with ImageNet weights (``KERAS_HOME`` must hold
them, e.g. ``KERAS_HOME=../shared/keras``), no augmentation. The frozen backbone's
features are computed once into a feature cache (one ``feature_extraction`` run of an
extra seed fills it, and is not counted); then, for each of ``--seeds`` (default 0 1 2):

* ``feature_extraction``: the project's default head (``gap_dense``) trained with Adam
  over epochs on the cached features, early stopping on validation accuracy;
* ``linear_probe``: standardised features, L-BFGS logistic regression for every C of
  the default grid (1e-6 ... 1e5), C chosen by validation accuracy.

Both settings are fixed before the run; the test accuracy of each run is reported once,
as measured, and nothing is chosen by it. Prints each strategy's mean validation and
test accuracy over the seeds and two times: ``fit_seconds``, the fit of the classifier
on the cached features alone (Keras head: compile and epochs; probe: every C of the
grid and the validation scoring), which is the training time compared; and
``train_seconds``, the engine's whole strategy step (loading the cached features and
assembling the image model to save included, the same for both). Then the ratios the
issue targets: accuracy within 1 point, at least 10x less training time (fit_seconds).
Writes ``OUT/bench_linear_probe.json``.

    KERAS_HOME=$PWD/../shared/keras python benchmarks/bench_linear_probe.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TLBENCH_SHARED", ROOT.parent / "shared"))
WEIGHTS = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
STRATEGIES = ("feature_extraction", "linear_probe")


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else the platform's word for it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="prepared image side (px)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--out", default=None, help="folder for bench_linear_probe.json")
    args = parser.parse_args()
    os.environ.setdefault("KERAS_HOME", str(SHARED / "keras"))
    weights = Path(os.environ["KERAS_HOME"]) / "models" / WEIGHTS
    if not weights.is_file():
        raise SystemExit(f"needs the MobileNetV2 0.35 ImageNet weights: {weights} is missing")

    from tlbench.core import atomic
    from tlbench.datasets import prepare
    from tlbench.training import engine

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-linear-probe-"))
    prepared = work / f"hymenoptera-{args.size}"
    if not prepared.exists():
        source = SHARED / "datasets" / "hymenoptera"
        prepare(
            {"loader": "hymenoptera", "source": str(source)}, prepared, image_size=args.size, seed=0
        )
    cache = work / "features"

    def spec(strategy: str, seed: int) -> dict:
        return {
            "dataset": {"name": "hymenoptera", "prepared": str(prepared)},
            "backbone": {"name": "MobileNetV2", "weights": "imagenet", "kwargs": {"alpha": 0.35}},
            "strategy": {"name": strategy},
            "seed": seed,
            "training": {"input_size": args.size},
            "features_cache": str(cache),
        }

    warm_up = max(args.seeds) + 1  # fills the cache; not counted
    first = engine.run(spec("feature_extraction", warm_up), work / "fill-cache")
    runs: dict[str, list[dict]] = {name: [] for name in STRATEGIES}
    for seed in args.seeds:
        for name in STRATEGIES:
            metrics = engine.run(spec(name, seed), work / f"{name}-seed{seed}")
            if metrics["features"]["source"] != "cache":
                raise SystemExit(f"{name} seed {seed} did not read the feature cache")
            runs[name].append(metrics)

    summary = {}
    for name, results in runs.items():
        summary[name] = {
            "val_accuracy": statistics.mean(m["val"]["accuracy"] for m in results),
            "test_accuracy": statistics.mean(m["test"]["accuracy"] for m in results),
            "fit_seconds": statistics.mean(m["fit_seconds"] for m in results),
            "train_seconds": statistics.mean(m["train_seconds"] for m in results),
            "per_seed": [
                {
                    "seed": s,
                    "val_accuracy": m["val"]["accuracy"],
                    "test_accuracy": m["test"]["accuracy"],
                    "fit_seconds": m["fit_seconds"],
                    "train_seconds": m["train_seconds"],
                    **({"chosen_C": m["chosen_C"]} if "chosen_C" in m else {}),
                }
                for s, m in zip(args.seeds, results, strict=True)
            ],
        }
    fe, lp = summary["feature_extraction"], summary["linear_probe"]
    points = 100 * (lp["test_accuracy"] - fe["test_accuracy"])
    speed_up = fe["fit_seconds"] / lp["fit_seconds"]
    step_ratio = fe["train_seconds"] / lp["train_seconds"]
    report = {
        "benchmark": "bench_linear_probe",
        "dataset": f"hymenoptera {args.size}px",
        "backbone": "MobileNetV2 alpha 0.35, ImageNet weights, frozen",
        "seeds": args.seeds,
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "cache_fill_seconds": first["train_seconds"],
        "strategies": summary,
        "test_accuracy_difference_points": points,
        "within_1_point": abs(points) <= 1.0,
        "at_most_1_point_worse": points >= -1.0,
        "train_time_ratio": speed_up,
        "at_least_10x": speed_up >= 10.0,
        "strategy_step_ratio": step_ratio,
    }
    print(f"\nhymenoptera {args.size}px, MobileNetV2 a0.35 (ImageNet, frozen), seeds {args.seeds}")
    print(f"CPU: {report['cpu']} x{report['cpus']}, load average {report['load_average']:.2f}")
    print(f"{'strategy':<20} {'val acc':>8} {'test acc':>9} {'fit s':>8} {'step s':>8}")
    for name, row in summary.items():
        print(
            f"{name:<20} {row['val_accuracy']:>8.4f} {row['test_accuracy']:>9.4f} "
            f"{row['fit_seconds']:>8.3f} {row['train_seconds']:>8.2f}"
        )
    print(
        f"linear_probe - feature_extraction: {points:+.2f} test accuracy points "
        f"(within 1: {report['within_1_point']}); training time (fit) {speed_up:.1f}x less "
        f"(at least 10x: {report['at_least_10x']}); whole strategy step {step_ratio:.1f}x"
    )
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic.write_json(out / "bench_linear_probe.json", report)


if __name__ == "__main__":
    main()
