"""Training: :class:`Trainer` compiles and fits one phase at a time, and fits a
strategy's declared phases (:meth:`Trainer.fit_phases`, the default
:meth:`tlbench.strategies.Strategy.train`).

Every fit gets the history recorder, the NaN guard, the per-epoch seeds
(:mod:`tlbench.training.callbacks`), early stopping when the spec asks for it, and, in a
run with a :class:`tlbench.training.resume.Resume`, a checkpoint after every epoch.
A non-finite loss raises :class:`RunFailed`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import keras

from tlbench.core.errors import RunFailed
from tlbench.core.seeds import derived_seed
from tlbench.models.inputs import ImageBatches, fit_input
from tlbench.strategies.base import Phase, TrainContext, TrainResult
from tlbench.training.callbacks import (
    EpochAdvance,
    EpochSeed,
    Heartbeat,
    HistoryRecorder,
    NaNGuard,
    ResumeCallback,
)
from tlbench.training.epoch_metrics import monitored_metrics
from tlbench.training.feature_cache import features_for_run
from tlbench.training.jit import compile_options
from tlbench.training.optimizers import EpochSchedule, build_optimizer
from tlbench.training.resume import Resume

#: Train head-only phases without augmentation on cached backbone features
#: (tlbench.training.feature_cache). False pushes the images through the frozen backbone in
#: every epoch instead (same model, same result up to shuffling; for benchmarks).
USE_FEATURE_CACHE = True


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
        images = len(train[0]) if isinstance(train, tuple) else len(getattr(train, "x", ()))
        steps = math.ceil(images / training["batch_size"]) if isinstance(train, tuple) else 1
        stop = training["early_stopping"] if early_stopping else None
        compiled = []
        if metrics:  # the accuracy, and the metric early stopping monitors when another
            compiled = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
            monitor = stop["monitor"] if stop is not None else None
            compiled += monitored_metrics(monitor, int(model.outputs[0].shape[-1]))
        model.compile(
            optimizer=build_optimizer(training, phase.learning_rate, multipliers),
            loss=loss,
            metrics=compiled,
            steps_per_execution=steps,
            **compile_options(training, model, work=images * phase.epochs),
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
        stopper = None
        if stop is not None:
            stopper = keras.callbacks.EarlyStopping(
                monitor=stop["monitor"],
                mode="min" if stop["monitor"] == "val_loss" else "max",
                patience=stop["patience"],
                restore_best_weights=True,
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
        # a long run's log says where it is: the phase, then Keras's line per epoch
        print(f"phase {phase.name}: epochs {initial_epoch + 1} to {phase.epochs}", flush=True)
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

    def features(self, ctx: TrainContext) -> Any:
        """Pooled features of the frozen ``ctx.built.backbone`` on the train and val
        splits (:func:`tlbench.training.feature_cache.features_for_run`: from the feature cache when
        the spec names one, else computed): ``.train``, ``.val``, ``.info``."""

        (x_train, _), (x_val, _) = ctx.splits["train"], ctx.splits["val"]
        return features_for_run(ctx.spec, ctx.built.backbone, x_train, x_val)

    def fit_phases(self, strategy: Any, ctx: TrainContext) -> TrainResult:
        """Train ``ctx.built`` through ``strategy``'s phases on the train split (val:
        early stopping); the model, or the failure. A head-only phase without
        augmentation trains the head alone on cached backbone features
        (:data:`USE_FEATURE_CACHE`); when every phase did, the result carries those
        features (the evaluation's shortcut for the train and val predictions).
        """
        spec, built = ctx.spec, ctx.built
        batch = spec["training"]["batch_size"]
        (x_train, y_train), (x_val, y_val) = ctx.splits["train"], ctx.splits["val"]
        model, head, backbone = built.model, built.head, built.backbone
        train_ds = ImageBatches(x_train, y_train, batch, shuffle=True, seed=spec["seed"])
        val_ds = ImageBatches(x_val, y_val, batch)
        cached, images_phase, head_seconds = None, False, 0.0
        extras: dict[str, Any] = {}
        pretrained = bool(backbone.pretrained)
        try:
            for phase in built.phases:
                multipliers = strategy.configure(phase, backbone)
                if phase.head_only and built.augmentation is None and USE_FEATURE_CACHE:
                    cached = self.features(ctx)
                    extras.setdefault("features", cached.info)
                    fit_start = time.perf_counter()
                    self.fit(head, phase, (cached.train, y_train), (cached.val, y_val))
                    head_seconds += time.perf_counter() - fit_start
                else:
                    images_phase = True
                    self.fit(model, phase, train_ds, val_ds, multipliers=multipliers)
                if multipliers:
                    extras.setdefault("lr_multipliers", {})[phase.name] = multipliers
        except RunFailed as failure:
            return ctx.result(None, failure=str(failure), pretrained=pretrained, extras=extras)
        if cached is not None and not images_phase:
            # fit_seconds: every phase fitted the head on cached features; their seconds
            # alone (no feature loading, no model assembly), as linear_probe's fit is timed
            extras["fit_seconds"] = round(head_seconds, 4)
        return ctx.result(
            model,
            pretrained=pretrained,
            head=head,
            head_features=None if images_phase else cached,
            extras=extras,
        )
