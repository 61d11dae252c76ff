"""The engine: train and evaluate exactly one cell of the study matrix.

:func:`run` takes a run spec (see :mod:`tlbench.training.spec`) and an output folder,
and writes, atomically (the folder is complete or absent):

* ``metrics.json`` — status, test/val/train metrics, timings, parameter counts, the
  cost (:mod:`tlbench.training.cost`: forward FLOPs by XLA, images seen, images/s,
  wall and CPU seconds, peak memory), the resolved spec and the environment
  (docs/ARCHITECTURE.md "Run outputs");
* ``history.csv`` — one row per epoch: epoch, phase, loss, accuracy, val_loss,
  val_accuracy, learning_rate, seconds;
* ``model.keras`` — the whole classifier (raw 0..255 images at the prepared
  size -> class probabilities) with its backbone nested as ``"backbone"``;
* ``classes.json``, ``predictions.npz`` (test ``y_true``, ``y_prob``, ``classes``,
  ``split``, ``groups`` where the data is grouped; the val split's in a pilot run; outside
  a pilot also the val split's ``val_y_true``, ``val_y_pred``, ``val_p_pos`` for two classes
  and ``val_groups``: the committed evidence of a measured study);
* strategy extras (``reconstructions.npz`` for ``autoencoder``).

A run reads: load the data (:mod:`tlbench.models.inputs`) -> build the model
(:func:`tlbench.models.assembly.build_model`, unless the strategy builds its own) -> the
strategy trains it (:meth:`tlbench.strategies.Strategy.train`, through the
:class:`tlbench.training.trainer.Trainer`) -> evaluate (:func:`tlbench.training.evaluation.evaluate`)
-> write the outputs atomically (here).

Data: the val split drives early stopping only; the test split is read once,
at the very end. A pilot run (spec ``pilot: true``) never opens the test split:
the val split takes its place in the final evaluation and ``test`` is null. A non-finite loss stops training and the run is recorded with
``status: "failed"`` and the epoch and phase where it happened.

Resume: finished epochs are checkpointed in ``OUTDIR + ".work"`` (one every 60 s of
training and every fit's end: :class:`tlbench.training.resume.Resume`), so a killed or
requeued job continues from its last checkpointed epoch; ``metrics.json`` then says ``resumed: true``, lists the ``attempts`` and
reports their summed ``train_seconds``/``setup_seconds``. Each epoch's random
state (data order, dropout, augmentation) derives from ``(seed, epoch)``
(:class:`tlbench.models.inputs.ImageBatches`, :class:`tlbench.training.callbacks.EpochSeed`), so the resumed run is the
uninterrupted one. The folder is removed once the outputs are written. It is locked
for the whole run (:class:`tlbench.training.run_lock.RunLock`): a second process
writing the same run fails at once, naming the holder (host, pid).
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tlbench.core.atomic import atomic_dir, write_json
from tlbench.core.provenance import environment, utc_now
from tlbench.core.run_folder import HISTORY_COLUMNS, RUN_LAYOUT
from tlbench.datasets.fingerprint import data_fingerprint
from tlbench.models.assembly import build_model
from tlbench.models.inputs import (
    TRAIN_VAL_SPLITS,
    apply_budget,
    fill_input_size,
    load_prepared,
)
from tlbench.strategies.base import STRATEGIES, TrainContext
from tlbench.training.cost import RunMeter, forward_flops, images_seen, training_record
from tlbench.training.evaluation import count_params, evaluate
from tlbench.training.jit import jit_record
from tlbench.training.resume import Resume
from tlbench.training.run_lock import RunLock
from tlbench.training.spec import budget_seed, resolve_spec
from tlbench.training.trainer import Trainer


def run(
    spec: Mapping[str, Any] | str | os.PathLike,
    outdir: str | os.PathLike,
    before_commit: Callable[[dict[str, Any]], Any] | None = None,
) -> dict[str, Any]:
    """Train and evaluate one run; write ``outdir`` atomically; return the metrics dict.

    Spec errors raise :class:`tlbench.core.errors.SpecError` before anything is written.
    ``before_commit(metrics)`` runs once every output is written, before the run
    folder is renamed into place (the test-split ledger's line,
    :func:`tlbench.analysis.ledger.record`): when it raises, the run fails with no
    run folder and its work folder kept, so a retry resumes and calls it again.
    """
    spec = resolve_spec(spec)
    previous_policy = keras.config.dtype_policy().name
    # one writer per run, for the whole run (a second fails here, naming this one)
    with RunLock(f"{outdir}.work", outdir) as lock:
        try:
            if spec["training"]["mixed_precision"]:
                keras.config.set_dtype_policy("mixed_float16")
            return _run(spec, Path(outdir), before_commit, lock)
        finally:
            keras.config.set_dtype_policy(previous_policy)


def _run(
    spec: dict[str, Any],
    outdir: Path,
    before_commit: Callable[[dict[str, Any]], Any] | None,
    lock: RunLock,
) -> dict[str, Any]:

    started_utc = utc_now()
    meter = RunMeter.start()
    pilot = spec["pilot"]
    # 1. load the data
    if pilot:  # the test split stays sealed: its files are neither required nor opened
        data = load_prepared(spec["dataset"]["prepared"], TRAIN_VAL_SPLITS)
    else:
        data = load_prepared(spec["dataset"]["prepared"])
    # the label budget's subset (tlbench.datasets.budget), drawn from the run's seed
    data, budget_record = apply_budget(data, spec["dataset"]["budget"], budget_seed(spec))
    classes = [str(c) for c in data.classes]
    if spec["dataset"]["name"] is None:
        spec["dataset"]["name"] = data.manifest.get("dataset")
    fill_input_size(spec["training"], data)
    keras.utils.set_random_seed(spec["seed"])
    strategy = STRATEGIES.get(spec["strategy"]["name"])(spec["strategy"]["params"])
    splits = {name: data.split(name) for name in ("train", "val")}
    image_shape = tuple(int(s) for s in splits["train"][0].shape[1:])
    batch = spec["training"]["batch_size"]

    resume = Resume(lock.dir, spec, data_fingerprint(data))
    trainer = Trainer(spec, resume=resume)
    metrics: dict[str, Any] = {"status": "ok", "pilot": pilot}
    if pilot:
        metrics["test"] = None
    start = resume.setup_start = time.perf_counter()
    # 2. build the model (a strategy with builds_model False builds its own in train)
    built = (
        build_model(spec, strategy, image_shape, len(classes)) if strategy.builds_model else None
    )
    # 3. the strategy trains it
    train_start = time.perf_counter()
    if strategy.trains:
        resume.train_start = train_start
    result = strategy.train(TrainContext(spec, built, splits, image_shape, classes, trainer))
    train_seconds = time.perf_counter() - train_start
    setup_seconds = time.perf_counter() - start
    # train_seconds: the strategy's training (feature caching and autoencoder stages
    # included); setup_seconds: everything before evaluation (model building too).
    if not strategy.trains:
        train_seconds = setup_seconds
    # A resumed run costs all its attempts (killed ones up to their last heartbeat).
    # this attempt on record in the work folder before the test split is read: a retry
    # (say, of a failed commit) is the same evaluation (tlbench.analysis.ledger.evaluation_id)
    resume.heartbeat(force=True)
    attempts = resume.finish_attempt(setup_seconds, train_seconds)
    train_seconds = sum(a["train_seconds"] for a in attempts)
    setup_seconds = sum(a["setup_seconds"] for a in attempts)
    model = result.model
    if result.failure is not None:
        metrics.update(status="failed", reason=result.failure)
        model = None
    if spec.get("run"):
        metrics["run"] = spec["run"]
    # 4. evaluate
    arrays = dict(result.arrays)
    if model is not None:
        evaluated, arrays["predictions.npz"] = evaluate(
            model,
            data,
            classes,
            batch,
            splits,
            head=result.head,
            head_features=result.head_features,
            pilot=pilot,
        )
        metrics.update(evaluated)
    metrics.update(
        {
            "classes": classes,
            "strategy": spec["strategy"]["name"],
            "pretrained": result.pretrained,
            "train_seconds": round(train_seconds, 3),
            "setup_seconds": round(setup_seconds, 3),
            "epochs_run": len(result.history),
            "best_epoch": result.best_epoch,
            "resumed": resume.resumed,
            "attempts": attempts,
        }
    )
    if model is not None:
        metrics["params_total"] = int(model.count_params())
        metrics["params_trainable"] = (
            count_params(model.trainable_weights) if strategy.trains else 0
        )
    # the cost (tlbench.training.cost): the process's wall, CPU and memory up to here, then
    # the forward FLOPs per image by XLA's cost analysis and the training images seen
    metrics.update(meter.finish())
    flops = (
        forward_flops(model, image_shape)
        if model is not None
        else {"forward_flops": None, "flops_method": None, "flops_note": "no trained model"}
    )
    seen = images_seen(
        len(splits["train"][1]), len(result.history), result.head_features is not None
    )
    metrics.update({**flops, **seen, **training_record(seen, train_seconds, flops)})
    metrics.update(budget_record)  # the label budget (tlbench.datasets.budget), every run's
    metrics.update(result.extras)
    metrics["spec"] = spec
    metrics["environment"] = environment()
    metrics["environment"]["slurm_job_id"] = os.environ.get("SLURM_JOB_ID")
    metrics["environment"]["jit_compile"] = jit_record(spec["training"], model)
    # wall-clock span of the run (a study's wall time is its runs' span, tlbench.report.pages.results)
    metrics["started_utc"], metrics["finished_utc"] = started_utc, utc_now()
    # 5. write the outputs atomically
    with atomic_dir(outdir, "run", RUN_LAYOUT) as tmp:
        write_json(tmp / "metrics.json", metrics)
        (tmp / "history.csv").write_text(_history_csv(result.history))
        write_json(tmp / "classes.json", classes)
        if model is not None:
            model.save(tmp / "model.keras")
        for name, content in arrays.items():
            np.savez_compressed(tmp / name, **content)
        if before_commit is not None:
            before_commit(metrics)
    lock.remove_folder()
    return metrics


def _history_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in HISTORY_COLUMNS})
    return out.getvalue()
