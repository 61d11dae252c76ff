"""Benchmark: training and feature-cache throughput per Keras backend mode, and agreement.

The same models, the same initial weights and the same data under three modes:

* ``tf`` — TensorFlow as the engine compiled steps before ``training.jit_compile``
  (``model.compile`` without ``jit_compile``; Keras's ``"auto"`` turns XLA off on a
  CPU-only TensorFlow, so this is a traced ``tf.function`` without XLA);
* ``tf_xla`` — TensorFlow with ``jit_compile=True`` (XLA);
* ``jax`` — Keras on JAX (CPU), ``jit_compile=True`` (``jax.jit``, Keras-JAX's own default).

Models, both built through the engine (:func:`tlbench.models.assembly.build_model`) from run
specs, read by the engine's input path (:func:`tlbench.models.inputs.fit_input` over
:class:`~tlbench.models.inputs.ImageBatches`), compiled with the engine's optimizer:

* ``small_cnn`` — seed 000's ``small_cnn_scratch`` (``configs/measured/seed000_gtsrb.yaml``:
  widths [32, 64, 128], 2 convs per block), strategy ``scratch``, 32 px;
* ``mobilenet`` — MobileNet alpha 0.25, strategy ``fine_tune`` (BatchNorm frozen),
  32-px images resized in the model to 64 px as seed 000's ``mobilenet_64``, with the
  real ImageNet weights when ``$KERAS_HOME/models`` holds them (``--weights none``
  for random weights: the same speed, the JSON says which was used).

Data: ``--images`` random 32x32 RGB uint8 images with random labels of 43 classes
(seeded; speed and agreement do not depend on what the images show). Training:
``--epochs`` epochs (default 2) without shuffling; the first is the warm-up (tracing /
XLA compilation), the last is timed. Feature cache: the engine's extractor
(:func:`tlbench.training.feature_cache.feature_extractor`, the backbone in inference mode + global
average pooling) through :func:`tlbench.training.feature_cache.extract`, a warm-up pass and a timed
pass over the same images, from the initial weights.

Agreement (exit status 1 when it fails): each mode's training loss of the first
epoch (the mean over its steps, all from the same initial weights and batches) and
its features must match ``tf``'s to a relative ``--rtol`` (default 1e-3: XLA and
JAX fuse and reorder float operations, so results differ in the last digits, not
more). Later epochs' loss differences are recorded, not checked: training
amplifies last-digit differences from step to step. The check runs no random operation: no shuffling, no augmentation, head
dropout 0, BatchNorm statistics are deterministic.

One process per backend, not ``keras.config.set_backend``: Keras fixes its backend
when imported, ``set_backend`` re-imports ``keras`` but every module that imported
it before (all of :mod:`tlbench`) keeps the old backend's objects, so it is not
reliable in one process. The TensorFlow process (``tf`` and ``tf_xla``) runs first
and saves each model's initial weights (``.weights.h5``) and the data (``.npz``);
the JAX process loads both.

    python benchmarks/bench_backends.py [--images 2048] [--epochs 2] [--out benchmarks/results]
    python benchmarks/bench_backends.py --quick          # seconds: a smoke test

Writes ``OUT/bench_backends.json`` (atomically): the CPU, load average, settings,
per model and mode images/s of the timed training epoch and forward pass, ratios
to ``tf``, and the agreement figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tlbench.models import assembly

#: Modes run by each backend's process, and their ``jit_compile``.
MODES = {"tf": ("tensorflow", False), "tf_xla": ("tensorflow", True), "jax": ("jax", True)}
BASELINE = "tf"
MODELS = ("small_cnn", "mobilenet")
NUM_CLASSES = 43


def model_spec(
    name: str, prepared: str, weights: str, batch_size: int, widths: list[int] | None = None
) -> dict[str, Any]:
    """The run spec of benchmark model ``name`` (resolved by :func:`tlbench.training.spec.resolve_spec`);
    ``widths``: small_cnn's (default seed 000's [32, 64, 128]; the test's are narrower)."""
    training = {"batch_size": batch_size, "epochs": 2, "early_stopping": None}
    if name == "small_cnn":
        backbone = {
            "name": "small_cnn",
            "weights": "none",
            "kwargs": {"widths": widths or [32, 64, 128], "convs_per_block": 2},
        }
        return {
            "dataset": {"prepared": prepared},
            "backbone": backbone,
            "strategy": {"name": "scratch"},
            "head": {"dropout": 0.0},
            "training": {**training, "input_size": 32},
        }
    if name == "mobilenet":
        return {
            "dataset": {"prepared": prepared},
            "backbone": {"name": "MobileNet", "weights": weights, "kwargs": {"alpha": 0.25}},
            "strategy": {"name": "fine_tune"},
            "head": {"dropout": 0.0},
            "training": {**training, "input_size": 64},
        }
    raise ValueError(f"unknown benchmark model {name!r}; valid: {', '.join(MODELS)}")


def make_data(path: Path, images: int, seed: int = 0) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(images, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, NUM_CLASSES, size=images).astype(np.int64)
    np.savez(path, x=x, y=y)


def run_modes(
    modes: list[str],
    workdir: Path,
    *,
    models: tuple[str, ...] = MODELS,
    epochs: int = 2,
    batch_size: int = 64,
    weights: str = "imagenet",
    features_n: int = 256,
    perturb: str | None = None,
    widths: list[int] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run ``modes`` (all of the current Keras backend) on ``workdir``'s data, each model
    from its initial weights (saved there by the first mode that builds it). Returns
    ``{model: {mode: figures}}``; features go to ``workdir/features_MODEL_MODE.npy``.
    ``perturb``: a mode whose initial weights are scaled by 1.01 (to see the check fail)."""
    import keras
    import numpy as np

    from tlbench.models.inputs import ImageBatches, fit_input
    from tlbench.strategies.base import STRATEGIES
    from tlbench.training import feature_cache
    from tlbench.training.callbacks import EpochTimer
    from tlbench.training.optimizers import build_optimizer
    from tlbench.training.spec import resolve_spec

    backend = keras.backend.backend()
    for mode in modes:
        if MODES[mode][0] != backend:
            raise ValueError(f"mode {mode!r} needs backend {MODES[mode][0]}, this is {backend}")
    data = np.load(workdir / "data.npz")
    x, y = data["x"], data["y"]
    out: dict[str, dict[str, Any]] = {}

    for name in models:
        spec = resolve_spec(model_spec(name, str(workdir), weights, batch_size, widths))
        strategy = STRATEGIES.get(spec["strategy"]["name"])(spec["strategy"]["params"])
        init = workdir / f"init_{name}.weights.h5"
        out[name] = {}
        for mode in modes:
            jit = MODES[mode][1]
            keras.utils.set_random_seed(0)
            built = assembly.build_model(spec, strategy, tuple(x.shape[1:]), NUM_CLASSES)
            model = built.model
            if init.exists():
                model.load_weights(init)
            else:
                model.save_weights(init)
            if mode == perturb:
                kernel = next(v for v in model.trainable_variables if len(v.shape) == 4)
                kernel.assign(keras.ops.convert_to_numpy(kernel) * 1.01)
            # the feature cache's forward pass, from the initial weights
            extractor = feature_cache.feature_extractor(
                built.backbone, tuple(x.shape[1:]), spec["training"]["input_size"], "bilinear"
            )
            extractor.jit_compile = jit
            fx = x[:features_n]
            feature_cache.extract(extractor, fx, batch_size)  # warm-up (tracing)
            start = time.perf_counter()
            feats = feature_cache.extract(extractor, fx, batch_size)
            forward = len(fx) / (time.perf_counter() - start)
            np.save(workdir / f"features_{name}_{mode}.npy", feats)
            # a training epoch, as the engine compiles it
            phase = built.phases[0]
            model.compile(
                optimizer=build_optimizer(spec["training"], phase.learning_rate),
                loss="sparse_categorical_crossentropy",
                metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                jit_compile=jit,
            )
            timer = EpochTimer()
            history = model.fit(
                fit_input(ImageBatches(x, y, batch_size)),
                epochs=epochs,
                shuffle=False,
                callbacks=[timer],
                verbose=0,
            )
            out[name][mode] = {
                "backend": backend,
                "jit_compile": bool(model.jit_compile),
                "train_images_per_s": round(len(x) / timer.seconds[-1], 2),
                "epoch_seconds": [round(s, 3) for s in timer.seconds],
                "loss": [float(v) for v in history.history["loss"]],
                "forward_images_per_s": round(forward, 2),
                "weights": spec["backbone"]["weights"],
                "load_average_1min": round(os.getloadavg()[0], 2),
            }
            print(f"{name:10s} {mode:7s} {out[name][mode]}", flush=True)
    return out


def agreement(
    results: dict[str, dict[str, Any]], workdir: Path, rtol: float
) -> list[dict[str, Any]]:
    """Each mode's losses and features against :data:`BASELINE`'s, per model."""
    import numpy as np

    checks = []
    for name, by_mode in results.items():
        if BASELINE not in by_mode:
            raise ValueError(f"{name}: the baseline mode {BASELINE!r} did not run")
        base = by_mode[BASELINE]
        base_feats = np.load(workdir / f"features_{name}_{BASELINE}.npy")
        for mode, figures in by_mode.items():
            if mode == BASELINE:
                continue
            rel = [
                abs(a - b) / max(abs(b), 1e-12)
                for a, b in zip(figures["loss"], base["loss"], strict=True)
            ]
            loss = rel[0]  # the first epoch, from the same weights
            feats = np.load(workdir / f"features_{name}_{mode}.npy")
            feat = float(
                np.linalg.norm(feats - base_feats) / max(np.linalg.norm(base_feats), 1e-12)
            )
            checks.append(
                {
                    "model": name,
                    "mode": mode,
                    "loss_rel_diff": loss,
                    # later epochs: informative only (training amplifies the last digits)
                    "loss_rel_diff_per_epoch": rel,
                    "features_rel_diff": feat,
                    "rtol": rtol,
                    "ok": bool(loss <= rtol and feat <= rtol),
                }
            )
    return checks


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """images/s of each mode over :data:`BASELINE`'s, training and forward pass."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, by_mode in results.items():
        base = by_mode[BASELINE]
        out[name] = {
            mode: {
                "train": round(f["train_images_per_s"] / base["train_images_per_s"], 3),
                "forward": round(f["forward_images_per_s"] / base["forward_images_per_s"], 3),
            }
            for mode, f in by_mode.items()
        }
    return out


def markdown(report: dict[str, Any]) -> str:
    """The report as a generated page (``bench_backends.md``, which docs/development.md names):
    images/s per model and mode with the ratio to :data:`BASELINE`, the agreement checks."""
    load = report["load_average"][0]
    lines = [
        "# bench_backends (generated by benchmarks/bench_backends.py; do not edit)",
        "",
        f"CPU: {report['cpu']} x{report['cpu_count']}, load average {load:.2f} at the end;"
        f" settings {report['settings']}.",
        "",
        "| model | mode | training images/s | ratio | forward images/s | ratio |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, by_mode in report["results"].items():
        for mode, f in by_mode.items():
            r = report["ratios_to_tf"][name][mode]
            lines.append(
                f"| {name} | {mode} | {f['train_images_per_s']:.1f} | {r['train']:.2f}x "
                f"| {f['forward_images_per_s']:.1f} | {r['forward']:.2f}x |"
            )
    lines += ["", "| model | mode | first-epoch loss, rel. diff | features, rel. diff | ok |"]
    lines.append("|---|---|---:|---:|---|")
    for c in report["agreement"]:
        lines.append(
            f"| {c['model']} | {c['mode']} | {c['loss_rel_diff']:.1e} "
            f"| {c['features_rel_diff']:.1e} | {'yes' if c['ok'] else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def _cpu() -> str | None:
    from tlbench.core.provenance import environment

    return environment().get("cpu")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=2, help="the last one is timed (>= 2)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--weights", default="imagenet", help="MobileNet's: imagenet | none")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated")
    parser.add_argument("--rtol", type=float, default=1e-3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--quick", action="store_true", help="128 images, tiny: a smoke test")
    parser.add_argument(
        "--reuse", type=Path, help="an earlier run's work folder: report its figures again"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run modes here
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if m not in MODES]
    if unknown or BASELINE not in modes:
        parser.error(f"--modes {args.modes!r}: valid modes {', '.join(MODES)}, {BASELINE} required")
    if args.epochs < 2:
        parser.error(f"--epochs {args.epochs}: needs >= 2 (the first is the warm-up)")
    if args.quick:
        args.images, args.batch_size = 128, 32
    settings = {
        "images": args.images,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "weights": args.weights,
    }
    if args.worker:
        result = run_modes(
            [m for m in modes if MODES[m][0] == args.worker],
            args.workdir,
            epochs=args.epochs,
            batch_size=args.batch_size,
            weights=args.weights,
            features_n=min(256, args.images),
        )
        (args.workdir / f"results_{args.worker}.json").write_text(json.dumps(result))
        return 0

    from tlbench.core.atomic import atomic_file, write_json

    workdir = args.reuse or Path(tempfile.mkdtemp(prefix="bench-backends-"))
    if not args.reuse:
        make_data(workdir / "data.npz", args.images)
    results: dict[str, dict[str, Any]] = {}
    for backend in dict.fromkeys(MODES[m][0] for m in modes):  # tensorflow first
        if args.reuse:  # the figures of an earlier run's work folder, checked again
            part = json.loads((workdir / f"results_{backend}.json").read_text())
            for name, by_mode in part.items():
                results.setdefault(name, {}).update(by_mode)
            continue
        env = {**os.environ, "KERAS_BACKEND": backend}
        cmd = [sys.executable, __file__, "--worker", backend, "--workdir", str(workdir)]
        cmd += ["--modes", ",".join(modes), "--epochs", str(args.epochs)]
        cmd += ["--batch-size", str(args.batch_size), "--weights", args.weights]
        cmd += ["--images", str(args.images)]
        subprocess.run(cmd, env=env, check=True)
        part = json.loads((workdir / f"results_{backend}.json").read_text())
        for name, by_mode in part.items():
            results.setdefault(name, {}).update(by_mode)
    checks = agreement(results, workdir, args.rtol)
    report = {
        "work_folder": str(workdir),
        "cpu": _cpu(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "settings": settings,
        "results": results,
        "ratios_to_tf": ratios(results),
        "agreement": checks,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "bench_backends.json", report)
    with atomic_file(args.out / "bench_backends.md") as page:
        page.write(markdown(report))
    print(f"\n{report['cpu']}, load average {report['load_average'][0]:.2f}, {settings}")
    print(
        f"{'model':10s} {'mode':7s} {'train img/s':>12s} {'ratio':>6s} {'fwd img/s':>10s} {'ratio':>6s}"
    )
    for name, by_mode in results.items():
        for mode, f in by_mode.items():
            r = report["ratios_to_tf"][name][mode]
            print(
                f"{name:10s} {mode:7s} {f['train_images_per_s']:12.1f} {r['train']:6.3f} "
                f"{f['forward_images_per_s']:10.1f} {r['forward']:6.3f}"
            )
    for c in checks:
        print(
            f"agreement {c['model']} {c['mode']} vs {BASELINE}: loss {c['loss_rel_diff']:.2e}, "
            f"features {c['features_rel_diff']:.2e} (rtol {c['rtol']:g}) "
            + ("ok" if c["ok"] else "FAILED")
        )
    print(f"work folder {workdir}; wrote {args.out / 'bench_backends.json'}")
    return 0 if all(c["ok"] for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
