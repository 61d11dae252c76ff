"""Keras callbacks of a run's fits: history rows, the NaN guard, per-epoch seeds.

:class:`HistoryRecorder` collects history.csv rows (global epoch numbering across
phases), :class:`NaNGuard` stops at the first non-finite loss, :class:`EpochSeed`
sets every seed generator from ``(seed, epoch)`` (:func:`derived_seed`) so a resumed
run draws what the uninterrupted one drew, and :class:`EpochAdvance` moves an
:class:`tlbench.models.inputs.ImageBatches` to its next epoch's order. The checkpointing
callbacks are in :mod:`tlbench.training.resume`.
"""

from __future__ import annotations

import math
import time
from typing import Any

import keras
import numpy as np

from tlbench.core.seeds import derived_seed
from tlbench.training.resume import Resume


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds of every epoch of a fit (``seconds``; the benchmarks' timer)."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self.seconds.append(time.perf_counter() - self.start)


class EpochAdvance(keras.callbacks.Callback):
    """Call ``batches.on_epoch_end()`` after every epoch (see :func:`fit_input`)."""

    def __init__(self, batches: Any):
        super().__init__()
        self.batches = batches

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self.batches.on_epoch_end()


class HistoryRecorder(keras.callbacks.Callback):
    """Collect history.csv rows (global epoch numbering across phases)."""

    def __init__(self, rows: list[dict[str, Any]], phase: str, schedule: Any):
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


class ResumeCallback(keras.callbacks.Callback):
    """Save a checkpoint after an epoch when one is due (:meth:`Resume.checkpoint_due`);
    restore early stopping at train begin."""

    def __init__(self, resume: Resume, fit: int, rows: list, stopper: Any, current: dict | None):
        super().__init__()
        self.resume, self.fit, self.rows = resume, fit, rows
        self.stopper, self.current = stopper, current

    def on_train_begin(self, logs=None) -> None:
        self.resume.start_fit()
        if self.current:
            self.resume.restore_stopper(self.current, self.stopper)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if self.resume.checkpoint_due():
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
