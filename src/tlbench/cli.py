"""Command line: ``tlbench run | prepare | features``.

* ``tlbench run SPEC.yaml OUTDIR [--threads N] [--pilot] [--ledger PATH]`` — train
  and evaluate one run (:func:`tlbench.training.engine.run`); OUTDIR is written atomically.
  ``--pilot`` sets the spec's ``pilot: true``: train/val only, the test split is
  never opened. A run that evaluates the test split appends one line to the
  test-split ledger (:mod:`tlbench.analysis.ledger`), ``PATH`` or by default
  ``test_evaluations.jsonl`` beside OUTDIR.
* ``tlbench prepare DATASET_CONFIG.yaml OUTDIR --image-size N --seed S`` —
  prepare a dataset (:func:`tlbench.datasets.prepare`).
* ``tlbench features SPEC.yaml OUTDIR [--threads N]`` — fill a frozen-backbone
  feature cache (:func:`tlbench.training.feature_cache.compute`).

``--threads`` (or the environment variable ``TLBENCH_THREADS``) limits
TensorFlow's intra- and inter-op thread pools when the Keras backend is
TensorFlow. Invalid specs and inputs exit with status 2 and a one-line message
naming the bad key or value (``TLBENCH_DEBUG=1`` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from tlbench.analysis import ledger
from tlbench.core.errors import RunLockedError, SpecError, UnknownNameError
from tlbench.training.spec import load_spec_file

EXIT_USAGE = 2


def limit_threads(threads: int | None) -> int | None:
    """Apply ``threads`` (or ``$TLBENCH_THREADS``) to TensorFlow's thread pools."""
    if threads is None:
        env = os.environ.get("TLBENCH_THREADS")
        if not env:
            return None
        try:
            threads = int(env)
        except ValueError:
            raise ValueError(f"TLBENCH_THREADS: {env!r} must be an integer >= 1") from None
    if threads < 1:
        raise ValueError(f"--threads: {threads} must be an integer >= 1")
    # deferred: imports Keras, only when a command that trains sets its threads
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # deferred: only on the TensorFlow backend

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError as error:  # TensorFlow already started in this process
            print(f"tlbench: warning: cannot limit threads to {threads}: {error}", file=sys.stderr)
    return threads


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tlbench", description="Transfer-learning benchmark: prepare data, train runs."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train and evaluate one run spec into OUTDIR")
    run.add_argument("spec", help="run spec (YAML)")
    run.add_argument("outdir", help="output folder (written atomically)")
    run.add_argument("--threads", type=int, default=None, help="TensorFlow thread limit")
    run.add_argument(
        "--pilot",
        action="store_true",
        help="pilot run: train and evaluate on train/val only, never open the test split",
    )
    run.add_argument(
        "--ledger",
        default=None,
        help="test-split ledger to append to (default: test_evaluations.jsonl beside OUTDIR)",
    )
    prep = sub.add_parser("prepare", help="prepare a dataset into OUTDIR")
    prep.add_argument("config", help="dataset config (YAML): {loader: ..., source: ..., ...}")
    prep.add_argument("outdir", help="output folder (written atomically)")
    prep.add_argument("--image-size", type=int, required=True, help="side of the prepared images")
    prep.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    feats = sub.add_parser("features", help="compute a frozen-backbone feature cache")
    feats.add_argument("spec", help="run spec or features spec (YAML)")
    feats.add_argument("outdir", help="cache folder (written atomically)")
    feats.add_argument("--threads", type=int, default=None, help="TensorFlow thread limit")
    return parser


def _prepare(args: argparse.Namespace) -> None:

    # deferred: each subcommand imports what it runs, so `tlbench --help` starts fast
    from tlbench.datasets import load_prepared, prepare

    try:
        with open(args.config) as handle:
            config = yaml.safe_load(handle)
    except FileNotFoundError:
        raise SpecError(f"dataset config {args.config} does not exist") from None
    except yaml.YAMLError as error:
        raise SpecError(f"dataset config {args.config} is not valid YAML: {error}") from None
    if not isinstance(config, dict):
        raise SpecError(f"dataset config {args.config}: expected a mapping, got {config!r}")
    path = prepare(config, args.outdir, image_size=args.image_size, seed=args.seed)
    data = load_prepared(path)
    per_class = [sum(n) for n in zip(*data.manifest["class_counts"].values(), strict=True)]
    classes = ", ".join(f"{c} ({n})" for c, n in zip(data.classes, per_class, strict=True))
    counts = "/".join(str(data.counts[s]) for s in ("train", "val", "test"))
    print(f"prepared {path}: {len(data.classes)} classes: {classes}; train/val/test {counts}")


def _run(args: argparse.Namespace) -> None:

    # deferred: imports Keras, only for `tlbench run`
    from tlbench.training.engine import run

    limit_threads(args.threads)
    spec = load_spec_file(args.spec)
    if args.pilot:
        spec["pilot"] = True
    path = args.ledger or Path(args.outdir).resolve().parent / ledger.NAME
    lines = []  # the ledger's line is written before the run folder is committed
    metrics = run(spec, args.outdir, before_commit=lambda m: lines.append(ledger.record(path, m)))
    test = metrics.get("test") or {}
    val = metrics.get("val") or {}
    line = lines[0] if lines else None
    print(
        f"{metrics['status']}: {args.outdir}"
        + (f" test accuracy {test['accuracy']:.4f}" if "accuracy" in test else "")
        + (
            f" validation accuracy {val['accuracy']:.4f} (pilot: test split sealed)"
            if metrics.get("pilot") and "accuracy" in val
            else ""
        )
        + (f" ({metrics['reason']})" if metrics.get("reason") else "")
        + (f"; test evaluation recorded in {path}" if line else "")
    )


def _features(args: argparse.Namespace) -> None:
    # deferred: imports Keras, only for `tlbench features`
    from tlbench.training.feature_cache import compute

    limit_threads(args.threads)
    print(f"features {compute(args.spec, args.outdir)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tlbench`` command; returns the exit status."""
    args = _parser().parse_args(argv)

    handlers = {"run": _run, "prepare": _prepare, "features": _features}
    try:
        handlers[args.command](args)
    except (SpecError, UnknownNameError, ValueError, FileNotFoundError) as error:
        if os.environ.get("TLBENCH_DEBUG") == "1":
            raise
        message = " ".join(str(error).split())
        print(f"tlbench {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except RunLockedError as error:  # another process writes this run
        if os.environ.get("TLBENCH_DEBUG") == "1":
            raise
        print(f"tlbench {args.command}: error: {error}", file=sys.stderr)
        return 1
    except MemoryError as error:
        if os.environ.get("TLBENCH_DEBUG") == "1":
            raise
        size = getattr(args, "image_size", None)
        hint = f"; --image-size {size} may be too large" if size is not None else ""
        print(f"tlbench {args.command}: error: out of memory: {error}{hint}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
