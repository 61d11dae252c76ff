"""The engine: train and evaluate exactly one cell of the study matrix.

:func:`run` takes a run spec (see :mod:`tlbench.spec`) and an output folder,
and writes, atomically (the folder is complete or absent):

* ``metrics.json`` — status, test/val/train metrics, timings, parameter counts,
  the resolved spec and the environment (docs/ARCHITECTURE.md "Run outputs");
* ``history.csv`` — one row per epoch: epoch, phase, loss, accuracy, val_loss,
  val_accuracy, learning_rate, seconds;
* ``model.keras`` — the whole classifier (raw 0..255 images at the prepared
  size -> class probabilities) with its backbone nested as ``"backbone"``;
* ``classes.json``, ``predictions.npz`` (test ``y_true``, ``y_prob``, ``classes``,
  ``split``; the val split's in a pilot run);
* strategy extras (``reconstructions.npz`` for ``autoencoder``).

Model: Input (prepared H×W×3, float 0..255) -> augmentation (active in
training only) -> Resizing to ``training.input_size`` (when different) ->
Preprocess(mode) -> backbone (``training=False`` when the strategy keeps
BatchNorm in inference mode) -> global average pooling (4D features) -> head
(a nested model named ``"head"``; float32 softmax).

Data: the val split drives early stopping only; the test split is read once,
at the very end. A pilot run (spec ``pilot: true``) never opens the test split:
the val split takes its place in the final evaluation and ``test`` is null. A non-finite loss stops training and the run is recorded with
``status: "failed"`` and the epoch and phase where it happened.

Resume: every finished epoch is checkpointed in ``OUTDIR + ".work"``
(:class:`Resume`), so a killed or requeued job continues from its last finished
epoch; ``metrics.json`` then says ``resumed: true``, lists the ``attempts`` and
reports their summed ``train_seconds``/``setup_seconds``. Each epoch's random
state (data order, dropout, augmentation) derives from ``(seed, epoch)``
(:class:`ImageBatches`, :class:`EpochSeed`), so the resumed run is the
uninterrupted one. The folder is removed once the outputs are written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tlbench.atomic import atomic_dir, atomic_file, write_json
from tlbench.compute import compile_options, jit_record
from tlbench.errors import ResumeWarning  # re-exported: callers import it from here
from tlbench.hashing import sha256_file
from tlbench.optim import EpochSchedule, build_optimizer
from tlbench.pipeline import (  # re-exported: callers import them from here
    TRAIN_VAL_SPLITS,
    ImageBatches,
    fill_input_size,
    fit_input,
    input_pipeline,
    load_prepared,
    pool_features,
    predict,
)
from tlbench.spec import SpecError, resolve_spec
from tlbench.strategies import STRATEGIES, Autoencoder, Phase, Strategy, is_batchnorm

HISTORY_COLUMNS = (
    "epoch",
    "phase",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "learning_rate",
    "seconds",
)
NO_AUGMENTATION = "none"
#: Train head-only phases without augmentation on cached backbone features
#: (tlbench.features). False pushes the images through the frozen backbone in
#: every epoch instead (same model, same result up to shuffling; for benchmarks).
USE_FEATURE_CACHE = True


class EpochAdvance(keras.callbacks.Callback):
    """Call ``batches.on_epoch_end()`` after every epoch (see :func:`fit_input`)."""

    def __init__(self, batches: ImageBatches):
        super().__init__()
        self.batches = batches

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self.batches.on_epoch_end()


# --------------------------------------------------------------------------- model parts


@keras.saving.register_keras_serializable(package="tlbench")
class SelectClasses(keras.layers.Layer):
    """Pick source-class probabilities for each target class and renormalise (``direct``)."""

    def __init__(self, indices: Sequence[int], **kwargs: Any):
        super().__init__(**kwargs)
        self.indices = [int(i) for i in indices]

    def call(self, inputs):
        picked = keras.ops.take(keras.ops.cast(inputs, "float32"), self.indices, axis=-1)
        total = keras.ops.sum(picked, axis=-1, keepdims=True)
        return picked / keras.ops.maximum(total, 1e-12)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], len(self.indices))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "indices": self.indices}


def build_head(head: Mapping[str, Any], feature_dim: int, num_classes: int) -> keras.Model:
    """The classification head on pooled features, a model named ``"head"``.

    ``gap_dense``: Dropout -> Dense softmax; ``mlp``: [Dense relu -> Dropout] per
    hidden width -> Dense softmax. The output layer is float32 (mixed precision safe).
    """
    inputs = keras.Input(shape=(feature_dim,), name="features")
    x = inputs
    for i, width in enumerate(head["hidden"], start=1):
        x = keras.layers.Dense(width, activation="relu", name=f"head_dense{i}")(x)
        if head["dropout"] > 0:
            x = keras.layers.Dropout(head["dropout"], name=f"head_dropout{i}")(x)
    if not head["hidden"] and head["dropout"] > 0:
        x = keras.layers.Dropout(head["dropout"], name="head_dropout")(x)
    x = keras.layers.Dense(num_classes, name="head_logits", dtype="float32")(x)
    outputs = keras.layers.Activation("softmax", name="head_softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="head")


def build_classifier(
    backbone: Any,
    head: keras.Model | None,
    spec: Mapping[str, Any],
    image_shape: tuple[int, int, int],
    num_classes: int,
    strategy: Strategy,
    augmentation: keras.layers.Layer | None,
) -> tuple[keras.Model, keras.Model]:
    """The whole classifier (see the module docstring) and its head."""
    training = spec["training"]
    inputs = keras.Input(shape=image_shape, name="image")
    x = inputs
    if augmentation is not None:
        x = augmentation(x)
    x = input_pipeline(
        x,
        training["input_size"],
        training["interpolation"],
        backbone.preprocess_mode,
    )
    x = backbone.model(x, training=False) if strategy.bn_inference else backbone.model(x)
    x = pool_features(x)
    if head is None:
        head = build_head(spec["head"], int(x.shape[-1]), num_classes)
    outputs = head(x)
    return keras.Model(inputs, outputs, name="classifier"), head


# --------------------------------------------------------------------------- callbacks


class HistoryRecorder(keras.callbacks.Callback):
    """Collect history.csv rows (global epoch numbering across phases)."""

    def __init__(self, rows: list[dict[str, Any]], phase: str, schedule: EpochSchedule | None):
        super().__init__()
        self.rows, self.phase, self.schedule = rows, phase, schedule
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = logs or {}
        lr = self.schedule.rates.get(epoch) if self.schedule else None
        if lr is None:
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.rows.append(
            {
                "epoch": len(self.rows) + 1,
                "phase": self.phase,
                "loss": _float(logs.get("loss")),
                "accuracy": _float(logs.get("accuracy")),
                "val_loss": _float(logs.get("val_loss")),
                "val_accuracy": _float(logs.get("val_accuracy")),
                "learning_rate": lr,
                "seconds": round(time.perf_counter() - self._start, 4),
            }
        )


class NaNGuard(keras.callbacks.Callback):
    """Stop training at the first non-finite batch loss; remember where it happened."""

    def __init__(self, phase: str, epoch_offset: int):
        super().__init__()
        self.phase, self.epoch_offset = phase, epoch_offset
        self.epoch = 0
        self.failure: str | None = None

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.failure = (
                f"loss became {float(loss)} at epoch {self.epoch_offset + self.epoch + 1} "
                f"(epoch {self.epoch + 1} of phase {self.phase!r}), batch {batch + 1}"
            )
            self.model.stop_training = True


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


# --------------------------------------------------------------------------- resume


#: Seconds between two updates of the attempt record while a fit runs (a killed
#: attempt's time is counted up to its last update).
HEARTBEAT_SECONDS = 10.0


def data_fingerprint(data: Any) -> str:
    """A content hash of a prepared dataset, cheap to compute at every run start.

    sha256 over manifest.json (without its ``prepare_seconds``), classes.json,
    the train and val labels and, per split, the images' shape and up to 64 evenly
    spaced images (the splits training reads: the test split is not opened).
    Preparing the data again with other labels, classes, size, sources or options
    changes it; preparing it again identically does not.
    """
    digest = hashlib.sha256()
    manifest = {k: v for k, v in data.manifest.items() if k != "prepare_seconds"}
    digest.update(json.dumps(manifest, sort_keys=True, default=str).encode())
    digest.update(json.dumps(list(data.classes)).encode())
    for name in ("train", "val"):
        x, y = data.split(name)
        digest.update(f"{name} {x.shape} {x.dtype} {y.dtype}".encode())
        digest.update(np.ascontiguousarray(y).tobytes())
        if len(x):
            picks = np.unique(np.linspace(0, len(x) - 1, num=min(64, len(x))).astype(np.int64))
            digest.update(np.ascontiguousarray(x[picks]).tobytes())
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Resume:
    """Per-epoch checkpoints of one run's fits in a work folder (``OUTDIR.work``).

    Fits (one per phase or autoencoder stage) are numbered in call order.
    ``progress.json`` holds the spec's hash and the prepared data's fingerprint
    (:func:`data_fingerprint`), the history rows so far, per finished fit its row
    count, best epoch and final weights file, and for the fit in progress its last
    two finished epochs (``current``, ``previous``): weights file, row count and
    early-stopping state. Every file is written under a hidden temporary name,
    flushed to disk (fsync), renamed into place, and its sha256 recorded in
    progress.json, which is replaced (the same way) after them.

    On resume a checkpoint of another spec or other data is discarded with a
    :class:`ResumeWarning`; so is one whose files are damaged (sha256 mismatch,
    missing, or failing to load): the run continues from the epoch before it,
    else from the start of that fit (a damaged finished fit: from its start).

    ``attempts.json`` lists the attempts (processes) of the run: start, last
    update, wall ``seconds``, ``setup_seconds``, ``train_seconds`` and
    ``slurm_job_id``; the current attempt's record is updated at every epoch end
    and every :data:`HEARTBEAT_SECONDS` of a fit, so a killed attempt's cost
    counts up to its last update. :meth:`finish_attempt` returns them all.
    """

    def __init__(
        self, workdir: str | os.PathLike, spec: Mapping[str, Any], data_key: str | None = None
    ):
        from tlbench.provenance import utc_now

        self.dir = Path(workdir)
        blob = json.dumps(spec, sort_keys=True, default=str).encode()
        self.key = hashlib.sha256(blob).hexdigest()
        self.data_key = data_key
        self.resumed = False
        self.next_fit = 0
        self.setup_start: float | None = None
        self.train_start: float | None = None
        self._wall_start = time.perf_counter()
        self._last_beat = 0.0
        self.attempt: dict[str, Any] = {
            "started_utc": utc_now(),
            "finished_utc": None,
            "seconds": 0.0,
            "setup_seconds": 0.0,
            "train_seconds": 0.0,
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        }
        self.previous_attempts: list[dict[str, Any]] = []
        self.state = {
            "spec": self.key,
            "data": data_key,
            "rows": [],
            "fits": [],
            "current": None,
            "previous": None,
        }
        if self.dir.is_dir():
            self._open()

    def _discard(self, why: str) -> None:
        warnings.warn(f"{self.dir}: {why}", ResumeWarning, stacklevel=3)

    def _open(self) -> None:
        """Read the work folder left by earlier attempts (see the class docstring)."""
        for path in self.dir.iterdir():  # temporaries of a killed write
            if path.name.startswith(".") and ".tmp-" in path.name:
                path.unlink()
        keys = {"spec": self.key, "data": self.data_key}
        state, same_run = None, True
        progress = self.dir / "progress.json"
        if progress.exists():
            try:
                state = json.loads(progress.read_text())
                if not isinstance(state, dict) or not {"rows", "fits", "current"} <= set(state):
                    raise ValueError("not a checkpoint record")
            except ValueError as error:
                self._discard(f"progress.json is damaged ({error}); the run starts over")
                state = None
        if state is not None and state.get("spec") != self.key:
            self._discard("the checkpoint is of another run spec; discarded, the run starts over")
            state, same_run = None, False
        elif state is not None and state.get("data") != self.data_key:
            self._discard(
                "the checkpoint was trained on other data (the prepared dataset changed "
                "since: its fingerprint differs); discarded, the run starts over"
            )
            state, same_run = None, False
        try:
            saved = json.loads((self.dir / "attempts.json").read_text())
        except (FileNotFoundError, ValueError):
            saved = None
        if same_run and isinstance(saved, dict) and saved.get("keys") == keys:
            self.previous_attempts = list(saved["attempts"])
        if state is None:
            shutil.rmtree(self.dir)
            return
        state.setdefault("previous", None)
        self.state = state

    # ---------------------------------------------------------------- attempts

    def heartbeat(self, force: bool = False) -> None:
        """Update this attempt's record (every HEARTBEAT_SECONDS unless ``force``)."""
        from tlbench.provenance import utc_now

        now = time.perf_counter()
        if not force and now - self._last_beat < HEARTBEAT_SECONDS:
            return
        self._last_beat = now
        self.attempt["finished_utc"] = utc_now()
        self.attempt["seconds"] = round(now - self._wall_start, 3)
        for key, start in (
            ("setup_seconds", self.setup_start),
            ("train_seconds", self.train_start),
        ):
            if start is not None:
                self.attempt[key] = round(now - start, 3)
        self._write_attempts()

    def _write_attempts(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        keys = {"spec": self.key, "data": self.data_key}
        _durable_json(
            self.dir / "attempts.json",
            {"keys": keys, "attempts": [*self.previous_attempts, self.attempt]},
        )

    def finish_attempt(self, setup_seconds: float, train_seconds: float) -> list[dict[str, Any]]:
        """Close this attempt with its measured times; every attempt of the run."""
        from tlbench.provenance import utc_now

        self.attempt.update(
            finished_utc=utc_now(),
            seconds=round(time.perf_counter() - self._wall_start, 3),
            setup_seconds=round(setup_seconds, 3),
            train_seconds=round(train_seconds, 3),
        )
        return [*self.previous_attempts, self.attempt]

    # ---------------------------------------------------------------- checkpoints

    def _intact(self, entry: Mapping[str, Any]) -> str | None:
        """None when every file of ``entry`` is there with its recorded sha256; else why not."""
        for name, digest in (entry.get("sha256") or {}).items():
            path = self.dir / name
            if not path.is_file():
                return f"{name} is missing"
            if sha256_file(path) != digest:
                return f"{name} is damaged (its sha256 differs from the one recorded)"
        if not entry.get("sha256"):
            return "no checksums recorded"
        return None

    def _load(self, model: keras.Model, entry: Mapping[str, Any], what: str) -> bool:
        """Load ``entry``'s weights into a compiled ``model``; False (warned) when damaged."""
        problem = self._intact(entry)
        if problem is None:
            if model.optimizer is not None and not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
            variables = list(model.weights)
            if model.optimizer is not None:
                variables += list(model.optimizer.variables)
            snapshot = [np.array(v.numpy()) for v in variables]
            try:
                model.load_weights(self.dir / entry["weights"])
            except Exception as error:  # a file that verifies but does not load
                for variable, value in zip(variables, snapshot, strict=True):
                    variable.assign(value)
                problem = f"{entry['weights']} does not load ({type(error).__name__}: {error})"
        if problem is not None:
            self._discard(f"checkpoint of {what}: {problem}; discarded")
            return False
        self.resumed = True
        return True

    def restore_finished(self, fit: int, model: keras.Model, trainer: Trainer) -> bool:
        """Restore a fit that had finished; False when it had not (or was damaged)."""
        if fit >= len(self.state["fits"]):
            return False
        done = self.state["fits"][fit]
        if not self._load(model, done, f"finished fit {fit}"):
            # this fit and everything after it are redone from the fit's start
            rows = self.state["fits"][fit - 1]["rows"] if fit else 0
            self.state = {
                **self.state,
                "rows": self.state["rows"][:rows],
                "fits": self.state["fits"][:fit],
                "current": None,
                "previous": None,
            }
            return False
        trainer.rows[:] = self.state["rows"][: done["rows"]]
        trainer.best_epoch = done["best_epoch"]
        return True

    def restore_current(self, fit: int, model: keras.Model, trainer: Trainer) -> dict | None:
        """Weights and rows of fit ``fit`` at its last good finished epoch (None: nothing)."""
        for which in ("current", "previous"):
            entry = self.state.get(which)
            if not entry or entry["fit"] != fit:
                continue
            if self._load(model, entry, f"fit {fit} after epoch {entry['epoch']}"):
                trainer.rows[:] = self.state["rows"][: entry["rows"]]
                self.state = {**self.state, "current": entry, "previous": None}
                return entry
        self.state = {**self.state, "current": None, "previous": None}
        return None

    def _save(self, name: str, write: Any) -> str:
        """Write file ``name`` through ``write(path)`` durably; its sha256."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".tmp-{name}"
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, self.dir / name)
        _fsync_dir(self.dir)
        return sha256_file(self.dir / name)

    def save_epoch(self, fit: int, epoch: int, model: keras.Model, rows: list, stopper: Any):
        """Checkpoint fit ``fit`` after its (0-based) ``epoch``."""
        name = f"fit{fit}-epoch{epoch + 1}.weights.h5"
        sums = {name: self._save(name, model.save_weights)}
        current = {
            "fit": fit,
            "epoch": epoch + 1,
            "rows": len(rows),
            "weights": name,
            "stopper": None,
        }
        if stopper is not None:
            best_name = None
            if stopper.best_weights is not None:
                best_name = f"fit{fit}-epoch{epoch + 1}-best.npz"
                sums[best_name] = self._save(
                    best_name, lambda path: np.savez(path, *stopper.best_weights)
                )
            current["stopper"] = {
                "wait": stopper.wait,
                "best": float(stopper.best) if math.isfinite(float(stopper.best)) else None,
                "best_epoch": stopper.best_epoch,
                "best_weights": best_name,
            }
        current["sha256"] = sums
        previous = self.state.get("current")
        if not previous or previous["fit"] != fit:
            previous = None
        self._write({**self.state, "rows": list(rows), "current": current, "previous": previous})
        self.heartbeat(force=True)

    def restore_stopper(self, current: dict, stopper: Any) -> None:
        """Early-stopping state of the fit in progress (after its on_train_begin)."""
        saved = current.get("stopper")
        if stopper is None or not saved:
            return
        stopper.wait = saved["wait"]
        if saved["best"] is not None:  # None: no monitored value seen yet
            stopper.best = saved["best"]
        stopper.best_epoch = saved["best_epoch"]
        if saved["best_weights"]:
            with np.load(self.dir / saved["best_weights"]) as z:
                stopper.best_weights = [z[f"arr_{i}"] for i in range(len(z.files))]

    def finish_fit(self, fit: int, model: keras.Model, rows: list, best_epoch: int | None):
        """Record a finished fit (its final weights, e.g. the restored best epoch)."""
        name = f"fit{fit}-final.weights.h5"
        done = {
            "rows": len(rows),
            "best_epoch": best_epoch,
            "weights": name,
            "sha256": {name: self._save(name, model.save_weights)},
        }
        fits = [*self.state["fits"], done]
        self._write(
            {**self.state, "rows": list(rows), "fits": fits, "current": None, "previous": None}
        )
        self.heartbeat(force=True)

    def _write(self, state: dict) -> None:
        """Replace progress.json, then drop weights files it no longer names."""
        state = {**state, "spec": self.key, "data": self.data_key}
        _durable_json(self.dir / "progress.json", state)
        self.state = state
        keep = {f["weights"] for f in state["fits"]} | {"progress.json", "attempts.json"}
        for entry in (state["current"], state.get("previous")):
            if entry:
                keep.update(entry.get("sha256") or {})
        for path in self.dir.iterdir():
            if path.name not in keep and not path.name.startswith("."):
                path.unlink()


def _durable_json(path: Path, data: Any) -> None:
    """Write JSON atomically and flushed to disk (file and folder fsync)."""
    with atomic_file(path) as handle:
        json.dump(data, handle, indent=1, default=str)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    _fsync_dir(path.parent)


class ResumeCallback(keras.callbacks.Callback):
    """Save a checkpoint after every epoch; restore early stopping at train begin."""

    def __init__(self, resume: Resume, fit: int, rows: list, stopper: Any, current: dict | None):
        super().__init__()
        self.resume, self.fit, self.rows = resume, fit, rows
        self.stopper, self.current = stopper, current

    def on_train_begin(self, logs=None) -> None:
        if self.current:
            self.resume.restore_stopper(self.current, self.stopper)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self.resume.save_epoch(self.fit, epoch, self.model, self.rows, self.stopper)


class Heartbeat(keras.callbacks.Callback):
    """Keep the attempt record of a run up to date while a fit runs (:class:`Resume`)."""

    def __init__(self, resume: Resume):
        super().__init__()
        self.resume = resume

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        self.resume.heartbeat()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self.resume.heartbeat()


# --------------------------------------------------------------------------- training


#: Second part of the seed of autoencoder stage decoders' initial weights
#: (``derived_seed(seed, DECODER_SEED_TAG, stage)``), apart from epochs' ``(seed, epoch)``.
DECODER_SEED_TAG = 0xDEC0DE


def derived_seed(seed: int, *parts: int) -> int:
    """A 31-bit seed drawn from ``(seed, *parts)`` (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([int(seed), *map(int, parts)]).generate_state(1)[0] >> 1)


def seed_states(model: keras.Model) -> list[Any]:
    """The state variables of every ``keras.random.SeedGenerator`` of ``model``
    (dropout, augmentation): its ``variables`` that are not ``weights``."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


class EpochSeed(keras.callbacks.Callback):
    """At every epoch start, set each seed generator of the model to a state drawn
    from ``(seed, epoch of the run, its index)``: dropout masks and augmentation of an
    epoch do not depend on what ran before it in the process (a resumed run draws
    what the uninterrupted run drew). Backend-neutral (SeedGenerator state
    variables); the data order is :class:`ImageBatches`' own ``(seed, epoch)``."""

    def __init__(self, seed: int, epoch_offset: int):
        super().__init__()
        self.seed, self.epoch_offset = int(seed), epoch_offset

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        run_epoch = self.epoch_offset + epoch
        for index, state in enumerate(seed_states(self.model)):
            value = [derived_seed(self.seed, run_epoch, index), 0]
            state.assign(np.asarray(value, dtype=keras.backend.standardize_dtype(state.dtype)))


class RunFailed(Exception):
    """Training diverged (non-finite loss); the message says where."""


@dataclass
class Trainer:
    """Fits phases of one run, collecting history rows and the best epoch."""

    spec: Mapping[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    resume: Resume | None = None

    def fit(
        self,
        model: keras.Model,
        phase: Phase,
        train: Any,
        val: Any,
        *,
        multipliers: Mapping[str, float] | None = None,
        loss: str = "sparse_categorical_crossentropy",
        metrics: bool = True,
        early_stopping: bool = True,
    ) -> None:
        """Compile ``model`` for ``phase`` and fit it; raise :class:`RunFailed` on NaN."""
        training = self.spec["training"]
        # In-memory arrays (cached features for a small head): run a whole epoch per
        # compiled call, since per-step Python overhead dominates such tiny steps.
        steps = math.ceil(len(train[0]) / training["batch_size"]) if isinstance(train, tuple) else 1
        model.compile(
            optimizer=build_optimizer(training, phase.learning_rate, multipliers),
            loss=loss,
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")] if metrics else [],
            steps_per_execution=steps,
            **compile_options(training, model),
        )
        # Checkpoint every epoch, except a head on in-memory cached features: its whole
        # fit takes seconds, so a killed one is simply redone (finish_fit still records it).
        per_epoch = self.resume is not None and not isinstance(train, tuple)
        fit_index, current, initial_epoch = None, None, 0
        if self.resume is not None:
            fit_index, self.resume.next_fit = self.resume.next_fit, self.resume.next_fit + 1
            if self.resume.restore_finished(fit_index, model, self):
                return
            current = self.resume.restore_current(fit_index, model, self) if per_epoch else None
            if current:
                initial_epoch = current["epoch"]
        start = len(self.rows) - initial_epoch
        if isinstance(train, ImageBatches):  # epoch e's order: the run's epoch start + e
            train.epoch = start + initial_epoch
            train.order = train._order()
        # Random state (shuffling of in-memory arrays, dropout, augmentation) from
        # (seed, epoch of the run), so a resumed fit draws what the uninterrupted one did.
        keras.utils.set_random_seed(derived_seed(self.spec["seed"], start + initial_epoch))
        schedule = EpochSchedule(training["schedule"], phase.learning_rate)
        guard = NaNGuard(phase.name, start)
        callbacks = [schedule, guard, HistoryRecorder(self.rows, phase.name, schedule)]
        callbacks.append(EpochSeed(self.spec["seed"], start))
        if self.resume is not None:
            callbacks.append(Heartbeat(self.resume))
        stop = training["early_stopping"] if early_stopping else None
        stopper = None
        if stop is not None:
            stopper = keras.callbacks.EarlyStopping(
                monitor=stop["monitor"], patience=stop["patience"], restore_best_weights=True
            )
            callbacks.append(stopper)
        if per_epoch:
            callbacks.append(ResumeCallback(self.resume, fit_index, self.rows, stopper, current))
        fit_kwargs: dict[str, Any] = {}
        if isinstance(train, tuple):
            x, y = train
            fit_kwargs = {"x": x, "y": y, "batch_size": training["batch_size"], "shuffle": True}
        else:
            fit_kwargs = {"x": fit_input(train)}
            if fit_kwargs["x"] is not train:  # tf.data: the order is ImageBatches'
                callbacks.append(EpochAdvance(train))
                fit_kwargs["shuffle"] = False
            val = fit_input(val)
        model.fit(
            **fit_kwargs,
            validation_data=val,
            epochs=phase.epochs,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            verbose=2,
        )
        if guard.failure:
            raise RunFailed(guard.failure)
        self.best_epoch = (
            start + (stopper.best_epoch if stopper else len(self.rows) - start - 1) + 1
        )
        if self.resume is not None:
            self.resume.finish_fit(fit_index, model, self.rows, self.best_epoch)


def _predict_arrays(model: keras.Model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Predictions for in-memory arrays (e.g. cached features), float64."""
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), np.float64)


def _count(variables: Sequence[Any]) -> int:
    return int(sum(math.prod(v.shape) for v in variables))


def _split_metrics(y: np.ndarray, prob: np.ndarray, classes: list[str]) -> dict[str, Any]:
    from tlbench.metrics import classification_metrics

    return classification_metrics(y, prob, classes)


def _history_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in HISTORY_COLUMNS})
    return out.getvalue()


def _build_augmentation(
    spec: Mapping[str, Any], image_size: tuple[int, int]
) -> keras.layers.Layer | None:
    aug = spec["augmentation"]
    if aug["name"] == NO_AUGMENTATION:
        return None
    from tlbench.augment import build_augmentation

    return build_augmentation(aug["name"], aug["params"], image_size)


def _to_pixels(x: np.ndarray, mode: str) -> np.ndarray:
    """Invert :class:`tlbench.preprocess.Preprocess` (for showing reconstructions)."""
    from tlbench.preprocess import IMAGENET_MEAN_BGR_255, IMAGENET_MEAN_RGB, IMAGENET_STD_RGB

    x = np.asarray(x, dtype=np.float32)
    if mode == "tf":
        x = (x + 1.0) * 127.5
    elif mode == "torch":
        x = (x * np.float32(IMAGENET_STD_RGB) + np.float32(IMAGENET_MEAN_RGB)) * 255.0
    elif mode == "caffe":
        x = (x + np.float32(IMAGENET_MEAN_BGR_255))[..., ::-1]
    elif mode == "unit":
        x = x * 255.0
    return x


def build_decoder(feature_shape: Sequence[int], size: int) -> keras.Model:
    """Decoder of an autoencoder stage: [Conv 3x3 relu -> UpSampling2D 2] until the
    input resolution (a final Resizing when it is not a power-of-two multiple),
    then a 3-channel Conv 3x3 (linear), as in seed 004."""
    height, _, channels = (int(s) for s in feature_shape)
    inputs = keras.Input(shape=tuple(int(s) for s in feature_shape), name="code")
    x, filters, step = inputs, channels, 0
    while height < size:
        step += 1
        x = keras.layers.Conv2D(
            filters, 3, padding="same", activation="relu", name=f"dec{step}_conv"
        )(x)
        x = keras.layers.UpSampling2D(2, name=f"dec{step}_up")(x)
        height *= 2
        filters = max(16, filters // 2)
    if height != size:
        x = keras.layers.Resizing(size, size, name="dec_resize")(x)
    outputs = keras.layers.Conv2D(3, 3, padding="same", name="dec_out", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="decoder")


def _preprocessed(spec: Mapping[str, Any], backbone: Any, x: np.ndarray) -> np.ndarray:
    """Images as the backbone sees them (resized and preprocessed), float32."""
    training = spec["training"]
    inputs = keras.Input(shape=tuple(x.shape[1:]))
    outputs = input_pipeline(
        inputs,
        training["input_size"],
        training["interpolation"],
        backbone.preprocess_mode,
    )
    model = keras.Model(inputs, outputs)
    return np.asarray(
        model.predict(fit_input(ImageBatches(x, None, training["batch_size"])), verbose=0),
        np.float32,
    )


def _autoencoder_stages(
    spec: Mapping[str, Any],
    strategy: Autoencoder,
    backbone: Any,
    x_train: np.ndarray,
    x_val: np.ndarray,
    trainer: Trainer,
) -> dict[str, np.ndarray]:
    """Greedy layer-wise autoencoder pretraining of ``backbone``; returns reconstructions."""
    training, params = spec["training"], strategy.params
    image_size, size = int(x_train.shape[1]), training["input_size"]
    stages = strategy.stage_count(backbone)
    xp_train = _preprocessed(spec, backbone, x_train)
    xp_val = _preprocessed(spec, backbone, x_val)
    shown = xp_val[: params["reconstructions"]]
    recon: dict[str, np.ndarray] = {"images": np.asarray(x_val[: len(shown)], np.uint8)}
    lr = params["ae_learning_rate"] or training["learning_rate"]
    for stage in range(stages):
        strategy.configure_stage(stage, backbone)
        layer = strategy.stage_output_layer(stage, backbone)
        code = backbone.model.get_layer(layer).output
        if len(code.shape) != 4:
            raise SpecError(
                f"strategy autoencoder: block {backbone.blocks[stage][0]!r} of backbone "
                f"{backbone.name!r} outputs shape {tuple(code.shape)}, not a 4D feature map; "
                "the autoencoder needs convolutional blocks (set strategy.params.stages lower)"
            )
        # the decoder's initial weights from (seed, stage), whichever stages were restored
        keras.utils.set_random_seed(derived_seed(spec["seed"], DECODER_SEED_TAG, stage))
        encoder = keras.Model(backbone.model.input, code, name=f"encoder{stage + 1}")
        inputs = keras.Input(shape=(size, size, 3), name="preprocessed")
        decoder = build_decoder(code.shape[1:], size)
        ae = keras.Model(inputs, decoder(encoder(inputs)), name=f"autoencoder{stage + 1}")
        phase = Phase(f"ae_stage{stage + 1}", params["ae_epochs"], lr)
        trainer.fit(
            ae,
            phase,
            (xp_train, xp_train),
            (xp_val, xp_val),
            loss="mse",
            metrics=False,
            early_stopping=False,
        )
        out = _to_pixels(ae.predict(shown, verbose=0), backbone.preprocess_mode)
        if size != image_size:
            out = keras.ops.convert_to_numpy(keras.ops.image.resize(out, (image_size, image_size)))
        recon[f"stage{stage + 1}"] = np.clip(out, 0, 255).astype(np.float32)
    return recon


@dataclass
class BuiltModel:
    """A run's classifier before training (see :func:`build_model`)."""

    model: keras.Model
    head: keras.Model
    backbone: Any
    augmentation: keras.layers.Layer | None
    phases: list[Phase]
    #: Set by fit_phases when every phase trained the head alone on these cached
    #: features: the backbone is as it was when they were computed, so the trained
    #: classifier's train/val predictions are the head's predictions on them.
    head_features: Any = None


def set_batchnorm_momentum(model: keras.Model, momentum: float | None) -> int:
    """Give every BatchNormalization layer of ``model`` (nested ones too) that trains
    (``trainable`` now) ``momentum``; frozen ones keep their own.

    Their moving statistics, which inference mode (validation, test, frozen
    phases) reads, follow the training batches at this rate. Keras applications
    ship 0.99 or 0.999: after a few hundred steps from random init their
    statistics still mostly hold the initial values, and the model scores high
    in training mode and at chance in inference mode (seed 000's train/test
    signature). ``None`` leaves the model's own. Returns the number of layers set.
    """
    if momentum is None:
        return 0
    count = 0
    for layer in _all_layers(model):
        if is_batchnorm(layer) and layer.trainable:
            layer.momentum = float(momentum)
            count += 1
    return count


def _all_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """The layers of ``model`` and of the models nested in it, depth first."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def build_model(
    spec: Mapping[str, Any],
    strategy: Strategy,
    image_shape: tuple[int, int, int],
    num_classes: int,
) -> BuiltModel:
    """Build backbone and classifier of a resolved spec, untrained.

    The strategy's layer counts and block names are checked against the backbone
    here, before any training. Also the build hook of :mod:`tlbench.tuning`.
    """
    from tlbench.backbones import build_backbone

    size = spec["training"]["input_size"]
    backbone = build_backbone(spec["backbone"], (size, size, 3))
    phases = strategy.phases(spec)
    for phase in phases:  # validate layer counts / block names before any training
        strategy.configure(phase, backbone)
        # the BatchNorm layers this phase trains (strategy.batchnorm) get the momentum
        set_batchnorm_momentum(backbone.model, spec["training"]["batchnorm_momentum"])
    if isinstance(strategy, Autoencoder):
        strategy.stage_count(backbone)
    augmentation = _build_augmentation(spec, image_shape[:2])
    model, head = build_classifier(
        backbone, None, spec, image_shape, num_classes, strategy, augmentation
    )
    return BuiltModel(model, head, backbone, augmentation, phases)


def fit_phases(
    built: BuiltModel,
    spec: Mapping[str, Any],
    strategy: Strategy,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    trainer: Trainer,
    extras: dict[str, Any],
    arrays: dict[str, dict[str, np.ndarray]],
) -> keras.Model | RunFailed:
    """Train ``built`` through the strategy's phases on the train split (val: early
    stopping); return the model or the failure. Also the fit hook of :mod:`tlbench.tuning`.
    """
    from tlbench.features import features_for_run

    batch = spec["training"]["batch_size"]
    (x_train, y_train), (x_val, y_val) = splits["train"], splits["val"]
    model, head, backbone = built.model, built.head, built.backbone
    train_ds = ImageBatches(x_train, y_train, batch, shuffle=True, seed=spec["seed"])
    val_ds = ImageBatches(x_val, y_val, batch)
    cached, images_phase = None, False
    try:
        if isinstance(strategy, Autoencoder):
            arrays["reconstructions.npz"] = _autoencoder_stages(
                spec, strategy, backbone, x_train, x_val, trainer
            )
        for phase in built.phases:
            multipliers = strategy.configure(phase, backbone)
            if phase.head_only and built.augmentation is None and USE_FEATURE_CACHE:
                cached = features_for_run(spec, backbone, x_train, x_val)
                extras.setdefault("features", cached.info)
                trainer.fit(head, phase, (cached.train, y_train), (cached.val, y_val))
            else:
                images_phase = True
                trainer.fit(model, phase, train_ds, val_ds, multipliers=multipliers)
            if multipliers:
                extras.setdefault("lr_multipliers", {})[phase.name] = multipliers
    except RunFailed as failure:
        return failure
    built.head_features = None if images_phase else cached
    return model


def _train(
    spec: dict[str, Any],
    strategy: Strategy,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    image_shape: tuple[int, int, int],
    classes: list[str],
    trainer: Trainer,
    extras: dict[str, Any],
    arrays: dict[str, dict[str, np.ndarray]],
) -> tuple[keras.Model | RunFailed, BuiltModel]:
    """Build backbone and classifier, run the strategy's phases; the model or the
    failure, and the built model (its backbone, its head's cached features)."""
    built = build_model(spec, strategy, image_shape, len(classes))
    start = time.perf_counter()
    if trainer.resume is not None:
        trainer.resume.train_start = start
    result = fit_phases(built, spec, strategy, splits, trainer, extras, arrays)
    extras["train_seconds"] = round(time.perf_counter() - start, 3)
    return result, built


def vote_counts(
    predicted: np.ndarray, y: np.ndarray, classes: list[str], num_source: int
) -> np.ndarray:
    """``counts[c, s]``: train images of target class c predicted as source class s."""
    counts = np.zeros((len(classes), num_source), dtype=np.int64)
    np.add.at(counts, (y, predicted), 1)
    for c, name in enumerate(classes):
        if counts[c].sum() == 0:
            raise ValueError(f"direct: class {name!r} has no train images to map to a source class")
    return counts


def map_classes(counts: np.ndarray, how: str) -> list[int]:
    """Source class of each target class from the vote ``counts`` (see ``Direct``)."""
    majority = counts.argmax(axis=1)
    if how == "majority" or len(set(majority.tolist())) == len(majority):
        return [int(s) for s in majority]
    num_target, num_source = counts.shape
    if num_source < num_target:
        raise ValueError(
            f"direct: mapping one_to_one needs at least as many source classes "
            f"({num_source}) as target classes ({num_target}); use mapping: majority"
        )
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(counts, maximize=True)
    return [int(s) for _, s in sorted(zip(rows, cols, strict=True))]


def _direct_model(
    spec: Mapping[str, Any],
    image_shape: tuple[int, int, int],
    classes: list[str],
    x_train: np.ndarray,
    y_train: np.ndarray,
    extras: dict[str, Any],
) -> keras.Model:
    """The source classifier with target classes mapped by majority vote on TRAIN."""
    from tlbench.backbones import build_source_classifier

    source, source_classes = build_source_classifier(spec["backbone"], image_shape)
    prob = predict(source, x_train, spec["training"]["batch_size"])
    votes = vote_counts(prob.argmax(axis=1), np.asarray(y_train), classes, prob.shape[1])
    mapping = map_classes(votes, spec["strategy"]["params"]["mapping"])
    inputs = keras.Input(shape=image_shape, name="image")
    outputs = SelectClasses(mapping, name="select_classes")(source(inputs))
    extras["direct_mapping"] = {classes[c]: str(source_classes[m]) for c, m in enumerate(mapping)}
    return keras.Model(inputs, outputs, name="classifier")


def _evaluate(
    model: keras.Model,
    data: Any,
    classes: list[str],
    batch: int,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    built: BuiltModel | None = None,
    pilot: bool = False,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Val and train metrics, then the test split: read once, predicted once (timed).

    When the head alone was trained on cached features (``built.head_features``),
    val and train predictions are the head's on those features: the same numbers
    as the whole model's (its backbone is frozen, in inference mode, and unchanged
    since the features were computed), without a second pass of the images through
    the backbone. The test split always goes through the saved classifier.

    ``pilot``: the test split is not opened; the validation split takes its place
    as the final evaluation (through the saved classifier, timed; its per-class
    accuracy, confusion matrix and ``predictions.npz``) and ``test`` is None.
    """
    final = "val" if pilot else "test"
    out: dict[str, Any] = {}
    cached = built.head_features if built is not None else None
    for name in ("val", "train"):
        if name == final:
            continue
        x, y = splits[name]
        if cached is not None:
            prob = _predict_arrays(built.head, getattr(cached, name), batch)
        else:
            prob = predict(model, x, batch)
        out[name] = _split_metrics(np.asarray(y), prob, classes)
    out["train_val_predicted_from"] = "cached features" if cached is not None else "images"
    x_test, y_test = splits["val"] if pilot else data.split("test")
    start = time.perf_counter()
    prob = predict(model, x_test, batch)
    seconds = time.perf_counter() - start
    test = _split_metrics(np.asarray(y_test), prob, classes)
    out[final] = test
    if pilot:
        out["test"] = None
    out["per_class_accuracy"] = test["per_class_accuracy"]
    out["confusion_matrix"] = test["confusion_matrix"]
    out["inference_images_per_second"] = round(len(x_test) / max(seconds, 1e-9), 2)
    predictions = {
        "y_true": np.asarray(y_test, np.int64),
        "y_prob": prob.astype(np.float32),
        "classes": np.asarray(classes),
        "split": np.asarray(final),
    }
    return out, predictions


def run(spec: Mapping[str, Any] | str | os.PathLike, outdir: str | os.PathLike) -> dict[str, Any]:
    """Train and evaluate one run; write ``outdir`` atomically; return the metrics dict.

    Spec errors raise :class:`tlbench.spec.SpecError` before anything is written.
    """
    spec = resolve_spec(spec)
    previous_policy = keras.config.dtype_policy().name
    try:
        if spec["training"]["mixed_precision"]:
            keras.config.set_dtype_policy("mixed_float16")
        return _run(spec, Path(outdir))
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _run(spec: dict[str, Any], outdir: Path) -> dict[str, Any]:
    from tlbench.provenance import environment, utc_now

    started_utc = utc_now()
    pilot = spec["pilot"]
    if pilot:  # the test split stays sealed: its files are neither required nor opened
        data = load_prepared(spec["dataset"]["prepared"], TRAIN_VAL_SPLITS)
    else:
        data = load_prepared(spec["dataset"]["prepared"])
    classes = [str(c) for c in data.classes]
    if spec["dataset"]["name"] is None:
        spec["dataset"]["name"] = data.manifest.get("dataset")
    fill_input_size(spec["training"], data)
    keras.utils.set_random_seed(spec["seed"])
    strategy = STRATEGIES.get(spec["strategy"]["name"])(spec["strategy"]["params"])
    splits = {name: data.split(name) for name in ("train", "val")}
    image_shape = tuple(int(s) for s in splits["train"][0].shape[1:])
    batch = spec["training"]["batch_size"]

    workdir = Path(f"{outdir}.work")
    resume = Resume(workdir, spec, data_fingerprint(data))
    trainer = Trainer(spec, resume=resume)
    extras: dict[str, Any] = {}
    arrays: dict[str, dict[str, np.ndarray]] = {}
    metrics: dict[str, Any] = {"status": "ok", "pilot": pilot}
    if pilot:
        metrics["test"] = None
    start = resume.setup_start = time.perf_counter()
    built = None
    if strategy.trains:
        model, built = _train(spec, strategy, splits, image_shape, classes, trainer, extras, arrays)
        pretrained = bool(built.backbone.pretrained)
    else:
        model = _direct_model(spec, image_shape, classes, *splits["train"], extras)
        pretrained = True
    setup_seconds = time.perf_counter() - start
    # train_seconds: the strategy's phases (feature caching and autoencoder stages
    # included); setup_seconds: everything before evaluation (model building too).
    train_seconds = extras.pop("train_seconds", setup_seconds)
    # A resumed run costs all its attempts (killed ones up to their last heartbeat).
    attempts = resume.finish_attempt(setup_seconds, train_seconds)
    train_seconds = sum(a["train_seconds"] for a in attempts)
    setup_seconds = sum(a["setup_seconds"] for a in attempts)
    if isinstance(model, RunFailed):
        metrics.update(status="failed", reason=str(model))
        model = None
    if spec.get("run"):
        metrics["run"] = spec["run"]
    if model is not None:
        evaluated, arrays["predictions.npz"] = _evaluate(
            model, data, classes, batch, splits, built, pilot=pilot
        )
        metrics.update(evaluated)
    metrics.update(
        {
            "classes": classes,
            "strategy": spec["strategy"]["name"],
            "pretrained": pretrained,
            "train_seconds": round(train_seconds, 3),
            "setup_seconds": round(setup_seconds, 3),
            "epochs_run": len(trainer.rows),
            "best_epoch": trainer.best_epoch,
            "resumed": trainer.resume.resumed,
            "attempts": attempts,
        }
    )
    if model is not None:
        metrics["params_total"] = int(model.count_params())
        metrics["params_trainable"] = _count(model.trainable_weights) if strategy.trains else 0
    metrics.update(extras)
    metrics["spec"] = spec
    metrics["environment"] = environment()
    metrics["environment"]["slurm_job_id"] = os.environ.get("SLURM_JOB_ID")
    metrics["environment"]["jit_compile"] = jit_record(spec["training"], model)
    # wall-clock span of the run (a study's wall time is its runs' span, tlbench.results)
    metrics["started_utc"], metrics["finished_utc"] = started_utc, utc_now()
    with atomic_dir(outdir) as tmp:
        write_json(tmp / "metrics.json", metrics)
        (tmp / "history.csv").write_text(_history_csv(trainer.rows))
        write_json(tmp / "classes.json", classes)
        if model is not None:
            model.save(tmp / "model.keras")
        for name, content in arrays.items():
            np.savez_compressed(tmp / name, **content)
    shutil.rmtree(workdir, ignore_errors=True)
    return metrics
