"""The package on the JAX backend: augmentation presets, backbones, preprocessing,
per-variable lr multipliers and a whole run through ``tlbench run``.

All checks run in one ``KERAS_BACKEND=jax`` subprocess (tests/backend_checks.py, one
Python + TensorFlow + JAX start instead of one per check); each test asserts its
check's result."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from engine_helpers import tiny_spec

CHECKS = Path(__file__).with_name("backend_checks.py")


@pytest.fixture(scope="module")
def jax_results(tiny_prepared, tmp_path_factory) -> dict:
    """{check: result} of tests/backend_checks.py run once under KERAS_BACKEND=jax."""
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed in this environment (KERAS_BACKEND=jax needs it)")
    tmp = tmp_path_factory.mktemp("jax")
    spec = tiny_spec(tiny_prepared, "discriminative_lr", training={"epochs": 1})
    spec_path = tmp / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    results = tmp / "results.json"
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, str(CHECKS), str(results), str(spec_path), str(tmp / "run")]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(results.read_text())
    assert out["backend"] == {"ok": True, "value": "jax"}, out["backend"]
    out["run_dir"] = tmp / "run"
    return out


def _value(results: dict, check: str):
    """The value of ``check``, failing with its traceback when it raised."""
    result = results[check]
    assert result["ok"], f"{check} failed under JAX:\n{result['error']}"
    return result["value"]


def test_presets_work_with_jax_backend(jax_results):
    """(was tests/test_augment.py) random in training, the identity at inference."""
    assert _value(jax_results, "augment_presets") >= 1


def test_backbones_work_with_jax_backend(jax_results):
    """(was tests/test_backbones.py) a custom CNN; weights from a run's model.keras."""
    _value(jax_results, "backbones")


def test_modes_under_jax_backend(jax_results):
    """(was tests/test_preprocess.py) tf/torch/caffe modes match keras.applications."""
    _value(jax_results, "preprocess_modes")


def test_multiplier_scales_sgd_updates_on_jax(jax_results):
    """(was tests/test_optim.py::test_multiplier_scales_sgd_updates[jax])"""
    result = _value(jax_results, "optimizer_sgd")
    assert result["backend"] == "jax"
    # Plain SGD: after several steps the scaled variable moved exactly 10x less
    # only to first order; with a tiny lr the ratio stays within 1%.
    np.testing.assert_allclose(result["ratio"], 0.1, rtol=0.01)


def test_forward_flops_on_jax(jax_results):
    """XLA's cost analysis through jax.jit(...).lower(...): the same 2 x 10 x 5 + 5 FLOPs
    of a Dense 10 -> 5 layer as on TensorFlow (tests/test_cost.py)."""
    record = _value(jax_results, "forward_flops")
    assert record["forward_flops"] == 2 * 10 * 5 + 5
    assert record["flops_method"] == "xla_cost_analysis/jax"


def test_bitfit_and_norm_only_train_their_variables_only_on_jax(jax_results):
    """Variable.trainable per variable, on a frozen BatchNorm layer too: JAX's trainer
    moves exactly the variables the strategy keeps (block1: one Conv2D, one BatchNorm)."""
    moved = _value(jax_results, "variable_selection")
    conv, bn = ("block1_conv1", "block1_conv2"), ("block1_bn1", "block1_bn2")
    assert moved["bitfit"] == sorted([f"{c}/bias" for c in conv] + [f"{b}/beta" for b in bn])
    assert moved["norm_only"] == sorted(f"{b}/{v}" for b in bn for v in ("beta", "gamma"))


def test_jax_backend_run(jax_results):
    """(was tests/test_engine.py) a discriminative_lr run through ``tlbench run``."""
    assert _value(jax_results, "engine_run") == 0
    metrics = json.loads((jax_results["run_dir"] / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["environment"]["backend"] == "jax"
    assert 0 <= metrics["test"]["accuracy"] <= 1
    assert metrics["flops_method"] == "xla_cost_analysis/jax" and metrics["forward_flops"] > 0


def test_regularised_strategies_penalties_on_jax(jax_results):
    """l2_sp's and bss's penalties have their values and act through fit under JAX too
    (tests/test_strategy_behaviour.py checks the same on TensorFlow)."""
    l2 = _value(jax_results, "l2_sp_penalty")
    assert l2["value"] == pytest.approx(l2["expected"], rel=1e-5)
    for n, d, k, value, expected in _value(jax_results, "bss_penalty"):
        assert value == pytest.approx(expected, rel=1e-4), (n, d, k)
    fits = _value(jax_results, "penalised_fits")
    assert fits["l2_sp"]["distance"] < 0.1 * fits["none"]["distance"]
    assert fits["bss"]["smallest"] < 0.05 * fits["none"]["smallest"]
