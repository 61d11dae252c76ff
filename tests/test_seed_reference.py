"""Seed reference data: every seed loads, tables are well formed, headline numbers match the reports."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest
from conftest import require_shared

from tlbench.report import seed_reference

NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?:e-?\d+)?", re.IGNORECASE)


def _numbers_in(text: str) -> set[float]:
    """Every number printed in ``text`` (thousands separators removed)."""
    found = set()
    for match in NUMBER.finditer(text):
        token = match.group().replace(",", "")
        try:
            found.add(float(token))
        except ValueError:
            continue
    return found


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@pytest.mark.parametrize("seed", seed_reference.SEED_IDS)
def test_every_seed_loads_and_tables_are_consistent(seed):
    data = seed_reference.load(seed)
    assert data["id"] == seed
    assert data["conclusions"] and data["issues"] and data["experiments"]
    frames = seed_reference.tables(seed)
    assert len(frames) == len(data["tables"]) >= 1
    for frame, entry in zip(frames, data["tables"], strict=True):
        assert isinstance(frame, pd.DataFrame)
        assert list(frame.columns) == entry["columns"]
        assert len(frame) == len(entry["rows"])
        assert all(len(row) == len(entry["columns"]) for row in entry["rows"])
        assert frame.attrs["id"] == entry["id"] and frame.attrs["seed"] == seed
        assert entry["heading_ru"] and entry["title"]


@pytest.mark.parametrize("seed", seed_reference.SEED_IDS)
def test_experiments_map_to_tlbench_strategies(seed):
    mapping = seed_reference.strategy_map(seed)
    assert mapping
    assert {strategy for _, strategy in mapping} <= seed_reference.STRATEGY_NAMES


def test_strategy_mapping_per_seed():
    used = {
        seed: {s for _, s in seed_reference.strategy_map(seed)} for seed in seed_reference.SEED_IDS
    }
    assert used["000"] == {"direct", "scratch", "feature_extraction", "fine_tune"}
    assert "two_phase" in used["001"]
    assert used["002"] == {"fine_tune", "feature_extraction", "freeze_bottom", "discriminative_lr"}
    assert used["003"] == {"scratch"}
    assert used["004"] == {"scratch", "autoencoder"}


def test_seed000_headline_numbers():
    fine = seed_reference.table("000", "fine_tuning").set_index("Model name")
    row = fine.loc["NASNetMobile_with_classifier"]
    assert row["Train accuracy"] == 0.9760
    assert row["Test accuracy"] == 0.0279  # printed 0.0279; rounds to the 0.028 quoted in the brief
    overall = seed_reference.table("000", "overall").set_index("Model name")
    assert overall.loc["CNN_10_relu", "Test accuracy"] == 0.9481
    assert overall.loc["NASNetMobile_zoom_data", "Train accuracy"] == 0.9963
    # the overall table repeats the four per-strategy tables exactly
    parts = pd.concat(
        [
            seed_reference.table("000", t)
            for t in ("direct_use", "structure_transfer", "feature_extraction", "fine_tuning")
        ]
    ).set_index("Model name")
    pd.testing.assert_frame_equal(overall.loc[parts.index], parts, check_dtype=False)
    hp = seed_reference.load(0)["hyperparameters"]
    assert (hp["optimizer"], hp["learning_rate"], hp["batch_size"], hp["epochs"]) == (
        "adam",
        0.001,
        128,
        10,
    )
    assert hp["interpolation"] == "bicubic" and hp["input_size"] == [32, 256]


def test_seed001_to_004_headline_numbers():
    val = seed_reference.table("001", "validation_results")
    assert val["Validation accuracy (%)"].tolist() == [89.22, 89.33]
    assert seed_reference.load("001")["hyperparameters"]["schedule"] == {
        "name": "exponential",
        "initial_lrate": 0.01,
        "k": 0.3,
    }
    hp2 = seed_reference.load("002")["hyperparameters"]
    assert (hp2["batch_size"], hp2["epochs"], hp2["schedule"]["step_epochs"]) == (4, 25, 7)
    assert seed_reference.table("002", "class_counts")["total"].tolist() == [244, 153]
    pets = seed_reference.table("003", "test_results").set_index("Model")
    assert pets.loc["with data augmentation", "accuracy"] == 0.6678
    assert pets.loc["without data augmentation", "accuracy"] == 0.6031
    ae = seed_reference.table("004", "test_results")
    assert ae.loc[0, "Accuracy"] == pytest.approx(0.6544850508239974, abs=0)
    assert seed_reference.table("004", "autoencoder_results")["Loss"].tolist() == [
        0.0023,
        0.0035,
        0.0057,
    ]


@pytest.mark.parametrize(
    ("seed", "table_id"),
    [
        ("003", "model1_architecture"),
        ("003", "model2_architecture"),
        ("003", "model3_architecture"),
        ("004", "autoencoder1_architecture"),
        ("004", "autoencoder2_architecture"),
        ("004", "autoencoder3_architecture"),
    ],
)
def test_architecture_tables_sum_to_their_printed_totals(seed, table_id):
    entry = next(t for t in seed_reference.load(seed)["tables"] if t["id"] == table_id)
    assert sum(row[2] for row in entry["rows"]) == entry["total_params"]


def test_unknown_seed_and_table_list_the_valid_ones():
    with pytest.raises(
        seed_reference.SeedReferenceError, match="valid seed ids: 000, 001, 002, 003, 004"
    ):
        seed_reference.load("005")
    with pytest.raises(seed_reference.SeedReferenceError, match="its tables: .*overall"):
        seed_reference.table("000", "nope")
    assert seed_reference.normalize_id(4) == seed_reference.normalize_id("seed004") == "004"


def test_validate_reports_bad_rows_and_strategies():
    data = seed_reference.load("000")
    data["tables"][2]["rows"][0] = data["tables"][2]["rows"][0][:-1]
    data["experiments"][0]["strategy"] = "transfer"
    with pytest.raises(seed_reference.SeedReferenceError) as err:
        seed_reference.validate(data, where="broken")
    message = str(err.value)
    assert "row 0 has 5 cells, the table has 6 columns" in message
    assert "'transfer' is not a tlbench strategy" in message
    del data["issues"]
    with pytest.raises(seed_reference.SeedReferenceError, match="missing key 'issues'"):
        seed_reference.validate(data)


def test_load_returns_independent_copies():
    first = seed_reference.load("000")
    first["tables"].clear()
    assert seed_reference.load("000")["tables"]


@pytest.mark.parametrize("seed", seed_reference.SEED_IDS)
def test_every_number_is_printed_in_the_report(seed):
    """Transcription check: each numeric table cell occurs in the original report."""
    data = seed_reference.load(seed)
    report = require_shared("seeds", data["source_file"]).read_text(encoding="utf-8")
    printed = _numbers_in(report)
    missing = []
    for entry in data["tables"]:
        for row in entry["rows"]:
            for cell in row:
                if _is_number(cell) and not any(
                    math.isclose(cell, p, rel_tol=1e-12) for p in printed
                ):
                    missing.append(f"{entry['id']}: {cell}")
    assert not missing, f"numbers not found in {data['source_file']}: {missing}"


def test_strategy_names_agree_with_the_registry():
    """seed_reference keeps its own copy (no Keras import to load seed data); it must not drift."""
    from tlbench.strategies.base import STRATEGIES

    assert set(STRATEGIES.names()) == seed_reference.STRATEGY_NAMES
