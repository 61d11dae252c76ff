"""A run's cost (tlbench.training.cost): XLA's FLOPs count against the analytic one, every
cost field in a tiny run's metrics.json, and verdict.cost choosing the cheapest cell."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pandas as pd
import pytest
from engine_helpers import tiny_spec

from tlbench.analysis import runs
from tlbench.analysis.verdict.answer import COSTS, answer
from tlbench.core.errors import StudyConfigError
from tlbench.core.yaml_files import load_yaml
from tlbench.report.figures.cost import cost_figure
from tlbench.report.pages import results
from tlbench.report.pages.answer import answer_text
from tlbench.report.pages.costs import cost_cells, cost_words
from tlbench.study.config import load_schema, validate_config
from tlbench.training import cost, engine

#: Every cost field a finished run's metrics.json carries.
COST_FIELDS = {
    "params_total", "params_trainable", "forward_flops", "flops_method", "flops_convention",
    "train_images", "train_passes", "train_images_seen", "flops_seen",
    "train_images_per_second", "inference_images_per_second", "wall_seconds", "cpu_seconds",
    "peak_rss_mb", "peak_rss_mb_at_start", "device_peak_memory_mb",
}  # fmt: skip


def test_dense_flops_are_xlas_two_per_multiply_add():
    """A Dense 10 -> 5 layer on one input: 10 x 5 multiply-adds at 2 FLOPs each (XLA's
    convention for a dot) plus 5 additions of the bias: 105."""
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(5)])
    record = cost.forward_flops(model, (10,))
    assert record["forward_flops"] == 2 * 10 * 5 + 5
    assert record["flops_method"] == f"xla_cost_analysis/{keras.backend.backend()}"
    assert "multiply-add" in record["flops_convention"]


@pytest.mark.parametrize(
    ("padding", "taps"),
    [
        # 'valid': 6 x 6 outputs, each all 3 x 3 taps
        ("valid", 6 * 6 * 9),
        # 'same': 8 x 8 outputs; XLA counts only the taps that fall on the image, not on
        # the zero padding: per axis 8 positions x 3 taps - 2 at the borders = 22
        ("same", 22 * 22),
    ],
)
def test_conv_flops_are_xlas_two_per_multiply_add(padding, taps):
    """A 3x3 Conv2D, 3 -> 4 channels, on an 8x8 image, no bias: each tap of each output
    position is 3 input channels x 4 filters multiply-adds, 2 FLOPs each."""
    model = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, padding=padding, use_bias=False)]
    )
    assert cost.forward_flops(model, (8, 8, 3))["forward_flops"] == 2 * taps * 3 * 4


def test_no_count_is_null_with_the_reason(monkeypatch):
    """A model XLA cannot lower, or a backend without a counter: null and why, no number."""

    def broken(x, training=False):
        raise RuntimeError("cannot trace this model")

    record = cost.forward_flops(broken, (4,))
    assert record["forward_flops"] is None
    assert "cannot trace this model" in record["flops_note"]
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    record = cost.forward_flops(keras.Sequential([keras.layers.Dense(2)]), (3,))
    assert record == {
        "forward_flops": None,
        "flops_method": None,
        "flops_note": "no XLA cost analysis on the torch backend",
    }


def test_images_seen_counts_passes_over_the_training_split():
    assert cost.images_seen(50, 3, cached_features=False)["train_images_seen"] == 150
    # a head fitted on cached features, or no epoch (the linear probe): one pass
    assert cost.images_seen(50, 3, cached_features=True)["train_passes"] == 1
    assert cost.images_seen(50, 0, cached_features=False)["train_images_seen"] == 50


def test_tiny_run_metrics_carry_every_cost_field(tiny_prepared, tmp_path):
    out = tmp_path / "run"
    metrics = engine.run(tiny_spec(tiny_prepared, training={"epochs": 2}), out)
    saved = json.loads((out / "metrics.json").read_text())
    assert COST_FIELDS <= set(saved), COST_FIELDS - set(saved)
    # the count is the saved classifier's, by XLA on one prepared-size image
    model = keras.saving.load_model(out / "model.keras")
    image = tuple(int(s) for s in np.load(tiny_prepared / "train_x.npy").shape[1:])
    assert saved["forward_flops"] == cost.forward_flops(model, image)["forward_flops"] > 0
    n_train = len(np.load(tiny_prepared / "train_y.npy"))
    assert saved["train_images"] == n_train and saved["train_passes"] == saved["epochs_run"] == 2
    assert saved["flops_seen"] == saved["forward_flops"] * 2 * n_train
    assert saved["train_images_per_second"] == pytest.approx(
        2 * n_train / saved["train_seconds"], rel=0.01
    )
    assert saved["wall_seconds"] >= saved["train_seconds"] > 0
    assert saved["cpu_seconds"] > 0
    assert saved["peak_rss_mb"] >= saved["peak_rss_mb_at_start"] > 0
    assert saved["device_peak_memory_mb"] is None and saved["device_memory_note"] == "no GPU"
    # the study table has them as columns, the results page's cells table shows them
    study = runs.collect_runs([out / "metrics.json"])
    row = study.iloc[0]
    assert row["flops_seen"] == saved["flops_seen"] and row["peak_rss_mb"] > 0
    shown = results.cell_table(study).iloc[0]
    assert shown["GFLOPs / image"] == f"{saved['forward_flops'] / 1e9:.3f}"
    assert shown["peak RSS (MB)"] == f"{saved['peak_rss_mb']:.0f}"
    assert shown["params (M)"] == f"{saved['params_total'] / 1e6:.3f}"
    assert metrics["forward_flops"] == saved["forward_flops"]


def _cells() -> pd.DataFrame:
    """Three cells of one dataset: the chosen one and two shown as good; the fast one on
    this machine does the most arithmetic, the one of fewest FLOPs has most parameters."""
    rows = [
        # strategy, verdict, train_seconds, forward_flops, params_total, flops_seen
        ("fine_tune", "selected", 50.0, 2e8, 2e6, 2e8 * 3000),
        ("feature_extraction", "equivalent", 5.0, 3e8, 3e6, 3e8 * 1000),
        ("two_phase", "equivalent", 30.0, 1e8, 4e6, 1e8 * 6000),
    ]
    table = pd.DataFrame(
        rows,
        columns=["strategy", "verdict", "train_seconds", "forward_flops", "params_total",
                 "flops_seen"],
    )  # fmt: skip
    table.insert(0, "dataset", "pets")
    table["backbone"], table["augmentation"] = "mnv2", "none"
    table["rank"] = [1, 2, 3]
    table["non_inferior"] = True
    table["test_accuracy"], table["ci_low"], table["ci_high"] = [0.9, 0.89, 0.9], 0.85, 0.95
    table["diff_low"], table["diff_high"] = -0.01, 0.01
    table["criterion"], table["seeds"], table["seed_variance"] = "val_accuracy", 3, "own"
    table["pretrained"], table["reason"] = None, ""
    return table


def _replicates() -> SimpleNamespace:
    """No bootstrap needed: the answer reads only the replicates' units, images and seed
    variances (no transfer gain: no cell without pretrained weights)."""
    return SimpleNamespace(units=10, images=10, seed_df=np.zeros(3), source=np.array(["own"] * 3))


def _answer(table: pd.DataFrame, how: str) -> dict:
    rows = pd.DataFrame()
    # what validation could tell is not this test's subject
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("tlbench.analysis.verdict.answer._validation", lambda rows, chosen: {})
        return answer("pets", table, _replicates(), rows, 0.01, 0.95, how)


@pytest.mark.parametrize(
    ("how", "cheapest", "words"),
    [
        ("flops_seen", "mnv2/feature_extraction/none", "3e+11 FLOPs"),
        ("train_seconds", "mnv2/feature_extraction/none", "5.0 s of training"),
        ("flops", "mnv2/two_phase/none", "1e+08 forward FLOPs per image"),
        ("params", "mnv2/fine_tune/none", "2,000,000 parameters"),
    ],
)
def test_verdict_cost_decides_the_cheapest_cell(how, cheapest, words):
    record = _answer(_cells(), how)
    assert record["cheapest_as_good"] == cheapest
    assert record["cost"] == how and record["cost_unit"] == COSTS[how][1]
    assert cost_words(how, record["cheapest_cost"]).startswith(words)
    # the terminal's answer names the same cell, by the verdict's cost, with its unit
    verdict = pd.DataFrame([{"dataset": "pets", "cost": how}])
    said = answer_text(_cells(), "r.html", verdict).splitlines()
    assert said[-2].startswith(f"  cheapest of those: {cheapest} ({words}")


def test_no_cheapest_named_when_a_cell_lacks_the_cost():
    table = _cells()
    table.loc[2, "forward_flops"] = math.nan  # a run from before the cost fields
    record = _answer(table, "flops")
    assert record["cheapest_as_good"] == ""
    assert record["cost_note"] == "no flops recorded for mnv2/two_phase/none: no cheapest named"


def test_cells_table_tells_apart_the_training_flops_of_a_few_shot_study():
    """At the scale of the methods study (0.04 GFLOPs an image, 200 images, 12 epochs:
    about 1e11 FLOPs seen) two cells whose training FLOPs differ by 40 % read differently
    in the cells table, each with its own non-zero figure."""
    shown = [cost_cells(pd.DataFrame({"flops_seen": [flops, flops]})) for flops in (1.0e11, 1.4e11)]
    column = next(h for h in shown[0] if "FLOPs seen" in h)
    assert shown[0][column] != shown[1][column], shown
    assert all(float(row[column].split()[0]) > 0 for row in shown), shown


def test_verdict_cost_is_checked_at_parse_time():
    config = load_yaml(Path(__file__).parents[1] / "config.yaml")  # the quickstart study
    config.pop("verdict", None)
    assert validate_config(config)["verdict"]["cost"] == "flops_seen"
    with pytest.raises(StudyConfigError, match=r"verdict\.cost: 'gpu_hours' is not valid"):
        validate_config({**config, "verdict": {"cost": "gpu_hours"}})
    # the schema's choices are the analysis's costs
    assert load_schema()["properties"]["verdict"]["properties"]["cost"]["enum"] == list(COSTS)


def test_cost_figure(tmp_path):
    table = _cells()
    table["peak_rss_mb"] = [900.0, 600.0, 800.0]
    png = cost_figure(table, "pets", tmp_path / "cost.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="outcome"):
        cost_figure(table.assign(verdict="odd"), "pets", tmp_path / "bad.png")
