"""Optimizers: per-variable lr multipliers on TensorFlow and JAX, schedules."""

from __future__ import annotations

import numpy as np
import pytest

from tlbench.training.optimizers import build_optimizer, schedule_lr


def _ratios(optimizer: str, momentum: float) -> dict:
    """tests/backend_checks.py's lr-multiplier check, in this process (TensorFlow; the
    same check on JAX: tests/test_jax_backend.py)."""
    import keras
    from backend_checks import optimizer_ratio

    assert keras.backend.backend() == "tensorflow"
    return optimizer_ratio(optimizer, momentum)


def test_multiplier_scales_sgd_updates():
    result = _ratios("sgd", 0.0)
    assert result["backend"] == "tensorflow"
    # Plain SGD: after several steps the scaled variable moved exactly 10x less
    # only to first order; with a tiny lr the ratio stays within 1%.
    np.testing.assert_allclose(result["ratio"], 0.1, rtol=0.01)


def test_multiplier_with_adam_on_tensorflow():
    result = _ratios("adam", 0.0)
    # Adam's step is lr-proportional per variable: 0.1x the lr -> 0.1x the step.
    np.testing.assert_allclose(result["ratio"], 0.1, rtol=0.05)


def test_sgd_options():
    opt = build_optimizer({"optimizer": "sgd", "momentum": 0.8, "nesterov": True}, 0.05)
    assert opt.momentum == 0.8 and opt.nesterov
    assert float(opt.learning_rate) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="valid optimizers: adam, sgd"):
        build_optimizer({"optimizer": "lbfgs"}, 0.1)


def test_optimizer_config_keeps_multipliers():
    opt = build_optimizer({"optimizer": "adam"}, 0.1, {"x/kernel": 0.5})
    assert opt.get_config()["multipliers"] == {"x/kernel": 0.5}


def test_schedules():
    assert schedule_lr({"name": "constant"}, 0.1, 9) == 0.1
    exp = {"name": "exponential", "decay_rate": 0.5, "decay_epochs": 2}
    assert [schedule_lr(exp, 1.0, e) for e in (0, 2, 4)] == [1.0, 0.5, 0.25]
    assert schedule_lr(exp, 1.0, 1) == pytest.approx(0.5**0.5)
    step = {"name": "step", "step_epochs": 7, "gamma": 0.1}
    assert [schedule_lr(step, 1.0, e) for e in (0, 6, 7, 14)] == pytest.approx([1, 1, 0.1, 0.01])
    with pytest.raises(ValueError, match="valid schedules: constant, exponential, step"):
        schedule_lr({"name": "cosine"}, 1.0, 0)
