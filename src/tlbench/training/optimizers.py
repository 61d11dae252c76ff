"""Optimizers, epoch-wise learning-rate schedules and per-variable lr multipliers.

* :func:`build_optimizer` makes Adam or SGD (momentum, Nesterov) from the run
  spec's ``training`` section. Both are subclasses that scale the learning rate
  of each variable by a multiplier (``{variable.path: factor}``, default 1.0):
  the multiplier is applied inside ``update_step``, which every Keras backend
  (TensorFlow, JAX, torch) calls once per variable with the current learning
  rate, so the same code is correct on all of them.
* :func:`schedule_lr` gives the learning rate of an epoch (counted from 0
  within a phase) for the schedules ``constant``, ``exponential``
  (``lr * decay_rate ** (epoch / decay_epochs)``, seed 001's exponential decay)
  and ``step`` (``lr * gamma ** floor(epoch / step_epochs)``, seed 002's
  "multiply by 0.1 every 7 epochs").
* :class:`EpochSchedule` is the callback that sets the optimizer's learning
  rate at the start of each epoch and records it, so history.csv shows it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import keras

# The valid names and the schedules' default parameters are the spec's (one table).
from tlbench.training.spec import OPTIMIZERS
from tlbench.training.spec import SCHEDULE_PARAMS as SCHEDULES


class _MultiplierMixin:
    """Scale each variable's learning rate by a multiplier looked up by variable path."""

    def _set_multipliers(self, multipliers: Mapping[str, float] | None) -> None:
        self._tl_multipliers = {str(k): float(v) for k, v in (multipliers or {}).items()}
        self._tl_scale: tuple[float, ...] = ()

    def build(self, var_list):  # noqa: D102 - Keras API
        super().build(var_list)
        self._tl_scale = tuple(self._tl_multipliers.get(v.path, 1.0) for v in var_list)

    def update_step(self, gradient, variable, learning_rate):  # noqa: D102 - Keras API
        scale = self._tl_scale[self._get_variable_index(variable)]
        if scale != 1.0:
            learning_rate = learning_rate * scale
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict[str, Any]:  # noqa: D102 - Keras API
        config = super().get_config()
        config["multipliers"] = dict(self._tl_multipliers)
        return config

    def load_own_variables(self, store) -> None:
        """Keras's, except that a saved state whose shapes are not this optimizer's is
        skipped with a warning, as Keras skips one of another count. A model that trained
        chosen variables (``bitfit``, ``norm_only``: ``Variable.trainable`` per variable)
        reloads with every variable of a trainable layer trainable: ``load_model`` must not
        fail on the optimizer state of another set of variables."""
        saved = [tuple(store[str(i)].shape) for i in range(len(store.keys()))]
        own = [tuple(v.shape) for v in self.variables]
        if len(saved) == len(own) and saved != own:
            warnings.warn(
                f"Skipping variable loading for optimizer {self.name!r}: the saved state is "
                "of other variables (shapes differ) than the reloaded model trains",
                stacklevel=2,
            )
            return
        super().load_own_variables(store)


@keras.saving.register_keras_serializable(package="tlbench")
class ScaledAdam(_MultiplierMixin, keras.optimizers.Adam):
    """Adam with per-variable learning-rate multipliers."""

    def __init__(self, *args, multipliers: Mapping[str, float] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._set_multipliers(multipliers)


@keras.saving.register_keras_serializable(package="tlbench")
class ScaledSGD(_MultiplierMixin, keras.optimizers.SGD):
    """SGD (optionally with momentum / Nesterov) with per-variable lr multipliers."""

    def __init__(self, *args, multipliers: Mapping[str, float] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._set_multipliers(multipliers)


def build_optimizer(
    training: Mapping[str, Any],
    learning_rate: float,
    multipliers: Mapping[str, float] | None = None,
) -> keras.optimizers.Optimizer:
    """Make the optimizer named by ``training["optimizer"]`` at ``learning_rate``.

    ``multipliers`` maps ``variable.path`` to a learning-rate factor; variables
    not listed train at the full rate.
    """
    name = training.get("optimizer", "adam")
    if name == "adam":
        return ScaledAdam(learning_rate=learning_rate, multipliers=multipliers)
    if name == "sgd":
        return ScaledSGD(
            learning_rate=learning_rate,
            momentum=float(training.get("momentum", 0.0)),
            nesterov=bool(training.get("nesterov", False)),
            multipliers=multipliers,
        )
    raise ValueError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(OPTIMIZERS)}")


def schedule_lr(schedule: Mapping[str, Any], base_lr: float, epoch: int) -> float:
    """Learning rate of ``epoch`` (0-based, within a phase) under ``schedule``."""
    name = schedule.get("name", "constant")
    if name == "constant":
        return float(base_lr)
    if name == "exponential":
        return float(base_lr * schedule["decay_rate"] ** (epoch / schedule["decay_epochs"]))
    if name == "step":
        return float(base_lr * schedule["gamma"] ** math.floor(epoch / schedule["step_epochs"]))
    raise ValueError(f"unknown schedule {name!r}; valid schedules: {', '.join(SCHEDULES)}")


class EpochSchedule(keras.callbacks.Callback):
    """Set the learning rate at each epoch's start; remember it for the history."""

    def __init__(self, schedule: Mapping[str, Any], base_lr: float):
        super().__init__()
        self.schedule = dict(schedule)
        self.base_lr = float(base_lr)
        self.rates: dict[int, float] = {}

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        lr = schedule_lr(self.schedule, self.base_lr, epoch)
        self.model.optimizer.learning_rate = lr
        self.rates[epoch] = lr
