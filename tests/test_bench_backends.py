"""benchmarks/bench_backends.py in its quick size, TensorFlow modes only, in this process:
the agreement check compares the modes (and fails when one mode's loss or features
differ)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "bench_backends", ROOT / "benchmarks/bench_backends.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_tf_modes_agree_and_a_differing_mode_fails(bench, tmp_path):
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the TensorFlow modes need the TensorFlow backend")
    import numpy as np

    bench.make_data(tmp_path / "data.npz", 32)
    kw = {"models": ("small_cnn",), "batch_size": 16, "features_n": 16, "widths": [4, 8]}
    results = bench.run_modes(["tf", "tf_xla"], tmp_path, epochs=1, **kw)
    fig = results["small_cnn"]
    assert [fig[m]["jit_compile"] for m in ("tf", "tf_xla")] == [False, True]
    assert len(fig["tf"]["loss"]) == 1 and fig["tf"]["train_images_per_s"] > 0
    assert bench.ratios(results)["small_cnn"]["tf"] == {"train": 1.0, "forward": 1.0}
    (check,) = bench.agreement(results, tmp_path, rtol=1e-3)
    assert (check["model"], check["mode"], check["ok"]) == ("small_cnn", "tf_xla", True)
    assert check["loss_rel_diff"] <= 1e-3 and check["features_rel_diff"] <= 1e-3
    # what the check reads, 1% off in one mode: it must fail (features, then loss)
    path = tmp_path / "features_small_cnn_tf_xla.npy"
    np.save(path, np.load(path) * 1.01)
    assert bench.agreement(results, tmp_path, rtol=1e-3)[0]["ok"] is False
    np.save(path, np.load(path) / 1.01)
    fig["tf_xla"]["loss"] = [v * 1.01 for v in fig["tf_xla"]["loss"]]
    (check,) = bench.agreement(results, tmp_path, rtol=1e-3)
    assert check["ok"] is False and check["features_rel_diff"] <= 1e-3
