"""Benchmark: the train_seconds of a run killed with SIGKILL mid-way and rerun,
against the same run uninterrupted (issue 15: within 15 %).

A generated dataset (the ``synthetic`` loader, ``--per-class`` images per class
at ``--size`` px) and a ``scratch`` run of the small CNN for ``--epochs`` epochs,
no early stopping, each run a separate ``tlbench run`` process:

1. uninterrupted;
2. killed with SIGKILL in epoch ``--kill-epoch`` (half-way through it, timed from
   the epoch before), then rerun to completion: it resumes from its checkpoint,
   and its ``train_seconds`` is the sum over both attempts (``metrics.json``
   ``attempts``), the killed one counted up to its last heartbeat;
3. uninterrupted again (the spread of two identical runs on this machine).

Prints each run's train_seconds, the attempts of the resumed one, the ratio of
the resumed run's train_seconds to the mean uninterrupted one, and the CPU.

    python benchmarks/bench_resume_cost.py
    python benchmarks/bench_resume_cost.py --per-class 400 --size 48 --epochs 6 --kill-epoch 4
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cpu() -> str:
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def _tlbench(*args: str) -> list[str]:
    return [sys.executable, "-m", "tlbench.cli", *args]


def _env() -> dict[str, str]:
    src = str(ROOT / "src")
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


def _train_seconds(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def _kill_in_epoch(spec: Path, out: Path, epoch: int) -> float:
    """Run until half-way through ``epoch`` (1-based), SIGKILL; seconds it ran."""
    progress = Path(f"{out}.work") / "progress.json"
    start = time.perf_counter()
    proc = subprocess.Popen(_tlbench("run", str(spec), str(out)), env=_env())
    try:
        while proc.poll() is None:
            try:
                state = json.loads(progress.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                state = None
            current = (state or {}).get("current")
            if current and current["epoch"] >= epoch - 1:
                time.sleep(0.5 * state["rows"][-1]["seconds"])
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return time.perf_counter() - start
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
    raise SystemExit(f"the run finished before epoch {epoch}; use more images or epochs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--kill-epoch", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from tlbench.datasets import prepare

    with tempfile.TemporaryDirectory(prefix="bench-resume-") as tmp:
        tmp = Path(tmp)
        config = {"loader": "synthetic", "num_classes": args.classes, "per_class": args.per_class}
        data = prepare(config, tmp / "data", image_size=args.size, seed=0)
        spec = tmp / "spec.json"
        spec.write_text(
            json.dumps(
                {
                    "dataset": {"prepared": str(data)},
                    "backbone": {"name": "small_cnn", "weights": "none"},
                    "strategy": {"name": "scratch"},
                    "training": {
                        "epochs": args.epochs,
                        "batch_size": args.batch_size,
                        "early_stopping": None,
                    },
                }
            )
        )
        seconds = {}
        subprocess.run(_tlbench("run", str(spec), str(tmp / "a")), env=_env(), check=True)
        seconds["uninterrupted 1"] = _train_seconds(tmp / "a")["train_seconds"]
        killed_after = _kill_in_epoch(spec, tmp / "b", args.kill_epoch)
        subprocess.run(_tlbench("run", str(spec), str(tmp / "b")), env=_env(), check=True)
        resumed = _train_seconds(tmp / "b")
        seconds["killed + rerun"] = resumed["train_seconds"]
        subprocess.run(_tlbench("run", str(spec), str(tmp / "c")), env=_env(), check=True)
        seconds["uninterrupted 2"] = _train_seconds(tmp / "c")["train_seconds"]

    print(f"\nCPU: {_cpu()} ({os.cpu_count()} cores)")
    print(
        f"data: synthetic {args.classes} classes x {args.per_class} at {args.size} px; "
        f"scratch small_cnn, {args.epochs} epochs; SIGKILL in epoch {args.kill_epoch} "
        f"({killed_after:.1f} s after its start)"
    )
    for name, value in seconds.items():
        print(f"  {name:16s} train_seconds {value:8.2f}")
    for i, attempt in enumerate(resumed["attempts"], start=1):
        print(
            f"    attempt {i}: train {attempt['train_seconds']:.2f} s, "
            f"setup {attempt['setup_seconds']:.2f} s, wall {attempt['seconds']:.2f} s"
        )
    reference = (seconds["uninterrupted 1"] + seconds["uninterrupted 2"]) / 2
    ratio = seconds["killed + rerun"] / reference
    print(f"  resumed / mean uninterrupted: {ratio:.3f} (target within 15 %: 0.85 .. 1.15)")


if __name__ == "__main__":
    main()
