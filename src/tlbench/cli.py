"""Command line: ``tlbench compare | init | run | prepare | features``.

* ``tlbench compare PATH [--hours H] [--profile P]`` — for a folder (or zip/tar) of class
  folders: write the study config ``tlbench-study.yaml`` (:mod:`tlbench.study.compare`),
  print what it compares and the estimated time, run the workflow (``snakemake``, locally
  or with ``--profile``), write ``report.html`` and print the answer
  (:mod:`tlbench.report.pages.answer`) and the measured time.
* ``tlbench init PATH [--hours H]`` — write that study config only (run it with
  ``snakemake --configfile tlbench-study.yaml``).

* ``tlbench run SPEC.yaml OUTDIR [--threads N] [--pilot] [--ledger PATH]`` — train
  and evaluate one run (:func:`tlbench.training.engine.run`); OUTDIR is written atomically.
  ``--pilot`` sets the spec's ``pilot: true``: train/val only, the test split is
  never opened. A run that evaluates the test split appends one line to the
  test-split ledger (:mod:`tlbench.analysis.ledger`), ``PATH`` or by default
  ``test_evaluations.jsonl`` beside OUTDIR, and to the machine's (in the user's data folder
  for tlbench, or ``$TLBENCH_DATA_DIR``). An existing OUTDIR is replaced only when it is
  empty or a run folder tlbench wrote (:func:`tlbench.core.atomic.check_replaceable`).
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
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from tlbench.analysis import ledger
from tlbench.core.atomic import atomic_file, check_replaceable
from tlbench.core.errors import RunLockedError, SpecError, UnknownNameError
from tlbench.core.run_folder import RUN_LAYOUT
from tlbench.core.yaml_files import load_yaml
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
        prog="tlbench",
        description="Transfer-learning benchmark: compare strategies on a folder, prepare data, train runs.",
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
        help="test-split ledger to append to (default: test_evaluations.jsonl beside OUTDIR; "
        "the line also goes to the machine's ledger)",
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
    for name, text in (
        ("compare", "write a study for a folder of class folders, run it, print the answer"),
        ("init", "write the study tlbench compare would run, without running it"),
    ):
        _compare_options(sub.add_parser(name, help=text), run=name == "compare")
    return parser


def _compare_options(parser: argparse.ArgumentParser, run: bool) -> None:
    parser.add_argument("path", help="folder (or zip/tar) with one subfolder of images per class")
    parser.add_argument(
        "--config", default=STUDY_FILE, help=f"study config to write (default {STUDY_FILE})"
    )
    parser.add_argument("--hours", type=float, default=None, help="shrink the study to fit")
    parser.add_argument(
        "--backbone",
        action="append",
        default=None,
        help="ImageNet backbone to compare (repeatable; default: those in $KERAS_HOME/models)",
    )
    parser.add_argument("--image-size", type=int, default=None, help="side of the images (px)")
    parser.add_argument("--epochs", type=int, default=None, help="most epochs of a run")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3)")
    parser.add_argument("--results", default="results", help="results folder (default results)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --config")
    if run:
        parser.add_argument("--cores", default="all", help="snakemake --cores (default all)")
        parser.add_argument("--profile", default=None, help="snakemake profile (e.g. a cluster)")
        parser.add_argument("--report", default="report.html", help="report to write")


STUDY_FILE = "tlbench-study.yaml"


def _init(args: argparse.Namespace) -> Path:
    """Write the study config of ``args.path``; print what it compares; return its path."""
    from tlbench.study import compare, defaults  # deferred: only init/compare survey folders

    data = compare.inspect_folder(args.path)
    if args.backbone:
        backbones = [defaults.backbone_by_key(key) for key in args.backbone]
    else:
        backbones = defaults.cached_backbones()
        if not backbones:
            known = ", ".join(entry.key for entry in defaults.IMAGENET)
            raise ValueError(
                f"no ImageNet weight file tlbench knows is in {defaults.keras_models_dir()} "
                "($KERAS_HOME/models): put one there (e.g. MobileNetV2's) or name backbones "
                f"with --backbone, which Keras downloads when online (known: {known})"
            )
    chosen, seconds = compare.plan(
        data, backbones, args.hours, side=args.image_size, epochs=args.epochs, seeds=args.seeds
    )
    config = Path(args.config)
    text = yaml.safe_dump(
        compare.study_config(data, chosen, args.results),
        sort_keys=False,
        width=100,
        default_flow_style=None,
    )
    header = (
        f"# Written by `tlbench {args.command} {args.path}`: an ordinary study config; edit it\n"
        f"# and rerun with: snakemake --cores all --configfile {config}\n"
    )
    if config.exists() and not args.force and config.read_text() != header + text:
        raise ValueError(f"{config} exists and differs: pass --force to overwrite it")
    with atomic_file(config) as handle:
        handle.write(header + text)
    print(compare.describe(chosen, data, seconds))
    print(f"study config: {config}")
    return config


def _compare(args: argparse.Namespace) -> None:

    # deferred: reads the ranking table after the workflow has run
    import pandas as pd

    from tlbench.report.pages.answer import answer_text  # deferred: pandas, as above

    config = _init(args)
    snakefile = Path(__file__).resolve().parents[2] / "Snakefile"
    if not snakefile.is_file():
        raise FileNotFoundError(
            f"{snakefile} is missing: tlbench compare runs the workflow of a tlbench "
            "checkout (pip install -e .)"
        )
    command = [str(Path(sys.executable).with_name("snakemake")), "--snakefile", str(snakefile)]
    command += ["--directory", os.getcwd(), "--configfile", str(config), "--cores", args.cores]
    # the project's default profile (rerun-incomplete, keep-going, ...): Snakemake looks
    # for profiles/default/ in the working directory, which is the user's here
    command += ["--profile", args.profile or str(snakefile.parent / "profiles" / "default")]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    started = time.monotonic()
    for extra in ([], ["--report", args.report]):
        if subprocess.run([*command, *extra], env=env).returncode != 0:
            raise StudyFailed(f"snakemake {' '.join([*command[1:], *extra])} failed (above)")
    tables = Path(args.results) / "tables"
    ranking = pd.read_csv(tables / "strategy_ranking.csv")
    verdict = pd.read_csv(tables / "verdict.csv") if (tables / "verdict.csv").is_file() else None
    print(answer_text(ranking, Path(args.report).resolve(), verdict))
    print(f"measured time: {(time.monotonic() - started) / 60:.1f} min")


class StudyFailed(RuntimeError):
    """The workflow of ``tlbench compare`` failed (Snakemake has said why)."""


def _prepare(args: argparse.Namespace) -> None:

    # deferred: each subcommand imports what it runs, so `tlbench --help` starts fast
    from tlbench.datasets import load_prepared, prepare

    try:
        config = load_yaml(args.config)
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

    # before training: OUTDIR must be absent, empty or a run folder (checked again at the end)
    check_replaceable(args.outdir, "run", RUN_LAYOUT)
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

    handlers = {
        "run": _run,
        "prepare": _prepare,
        "features": _features,
        "init": _init,
        "compare": _compare,
    }
    try:
        handlers[args.command](args)
    except (SpecError, UnknownNameError, ValueError, FileNotFoundError) as error:
        if os.environ.get("TLBENCH_DEBUG") == "1":
            raise
        message = " ".join(str(error).split())
        print(f"tlbench {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except StudyFailed as error:
        print(f"tlbench {args.command}: {error}", file=sys.stderr)
        return 1
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
