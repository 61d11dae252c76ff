"""Tests of tlbench.tuning: search-space validation, a tiny search, resume after SIGKILL,
a changed search space starting afresh, and the test split never being read."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tlbench.analysis import runs
from tlbench.core.errors import TuningError
from tlbench.report.figures import tuning as figures_tuning
from tlbench.training.spec import resolve_spec
from tlbench.tuning import search
from tlbench.tuning import space as tuning_space
from tlbench.tuning import trials as tuning_trials
from tlbench.tuning.space import apply_tuned, resolve_tuning

SPACE = {"learning_rate": {"min": 1e-4, "max": 1e-2}}


def _spec(prepared: Path, strategy: str = "fine_tune", **params) -> dict:
    return {
        "dataset": {"prepared": str(prepared)},
        "backbone": {"name": "small_cnn", "weights": "none", "kwargs": {"widths": [4, 8]}},
        "strategy": {"name": strategy, "params": params},
        "training": {"epochs": 1, "batch_size": 16, "early_stopping": None},
    }


def _events(folder: Path) -> list[dict]:
    logs = list(folder.glob("search-*/trial_log.jsonl"))
    assert len(logs) <= 1, logs
    if not logs:
        return []
    return [json.loads(line) for line in logs[0].read_text().splitlines() if line.strip()]


def _completed(trial_json: Path) -> bool:
    """Whether the oracle's trial file says COMPLETED (False while it is being written)."""
    try:
        return json.loads(trial_json.read_text())["status"] == "COMPLETED"
    except (OSError, ValueError, KeyError):
        return False


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("strategy", "section", "key"),
    [
        ("two_phase", {"space": {"learning_rate": {"min": 1e-2, "max": 1e-4}}}, "learning_rate"),
        ("two_phase", {"space": {"learning_rate": {"min": -1e-3, "max": 1e-2}}}, ".min"),
        ("two_phase", {"space": {"phase2_learning_rate": {"min": 0, "max": 1}}}, ".min"),
        ("two_phase", {"space": {"unfreeze": {"min": 30, "max": 10}}}, "unfreeze"),
        ("two_phase", {"space": {"unfreeze": {"min": -1, "max": 10}}}, "unfreeze.min"),
        ("two_phase", {"space": {"unfreeze": {"blocks": []}}}, "unfreeze.blocks"),
        ("two_phase", {"space": {"frozen": {"min": 0, "max": 10}}}, "space.frozen"),
        ("two_phase", {"space": {"learning_rate": {"min": 1e-4}}}, "learning_rate.max"),
        ("two_phase", {"space": {"learning_rate": {"lo": 1e-4}}}, "learning_rate.lo"),
        ("two_phase", {"space": {}}, "tuning.space"),
        ("two_phase", {"tuner": "grid", "space": SPACE}, "tuning.tuner"),
        ("two_phase", {"max_trials": 5, "space": SPACE}, "tuning.max_trials"),
        ("two_phase", {"tuner": "random", "max_epochs": 5, "space": SPACE}, "max_epochs"),
        ("two_phase", {"budget": 5, "space": SPACE}, "tuning.budget"),
        ("discriminative_lr", {"space": {"decay": {"min": 0.5, "max": 2.0}}}, "decay.max"),
        ("direct", {"space": SPACE}, "tuning"),
        ("lp_ft", {"space": SPACE}, "cannot tune 'learning_rate'; it can tune: ft_learning_rate"),
        ("lp_ft", {"space": {"ft_learning_rate": {"min": 0, "max": 1}}}, "ft_learning_rate.min"),
        ("surgical", {"space": {"block": {"blocks": ["b", "b"]}}}, "block.blocks"),
        ("surgical", {"space": {"block": {"min": 3, "max": 1}}}, "space.block"),
        ("bitfit", {"space": {"block": {"min": 0, "max": 1}}}, "cannot tune 'block'"),
        ("l2_sp", {"space": {"eta": {"min": 1e-4, "max": 1e-1}}}, "space.eta"),
        ("l2_sp", {"space": {"alpha": {"min": 0, "max": 1}}}, "alpha.min"),
        ("bss", {"space": {"eta": {"min": 1e-1, "max": 1e-4}}}, "space.eta"),
        ("bss", {"space": {"k": {"min": 1, "max": 4}}}, "space.k"),
    ],
)
def test_bad_search_space_names_the_key(strategy, section, key):
    with pytest.raises(TuningError) as error:
        resolve_tuning(strategy, section, "strategies.s.tuning")
    assert key in str(error.value)
    assert str(error.value).startswith("strategies.s.tuning")


def test_resolve_fills_defaults_and_accepts_blocks():
    out = resolve_tuning(
        "two_phase",
        {"space": {**SPACE, "unfreeze": {"blocks": ["block2", "block1"]}}},
    )
    assert out["tuner"] == "hyperband" and out["factor"] == 3 and out["seed"] == 0
    assert out["space"]["unfreeze"] == {"blocks": ["block2", "block1"]}
    out = resolve_tuning(
        "freeze_bottom", {"tuner": "random", "space": {"frozen": {"min": 0, "max": 4}}}
    )
    assert out["space"]["frozen"] == {"min": 0, "max": 4, "step": 1}
    assert out["max_trials"] == 10 and "max_epochs" not in out
    assert resolve_tuning("freeze_bottom", out) == out  # idempotent (study, then search)
    hyperband = resolve_tuning("two_phase", {"space": SPACE})
    assert "max_trials" not in hyperband and hyperband["max_epochs"] is None
    assert resolve_tuning("two_phase", hyperband) == hyperband


def test_depth_beyond_backbone_or_unknown_block_is_an_error():
    from tlbench.models.backbones.applications import build_backbone

    backbone = build_backbone(
        {"name": "small_cnn", "weights": "none", "kwargs": {"widths": [4, 8]}}, (16, 16, 3)
    )
    tuning_space.check_space_against_backbone(
        {"unfreeze": {"min": 0, "max": 2, "step": 1}}, backbone, "s.space"
    )
    with pytest.raises(TuningError, match=r"s\.space\.unfreeze\.max: 500 exceeds the depth"):
        tuning_space.check_space_against_backbone(
            {"unfreeze": {"min": 0, "max": 500, "step": 1}}, backbone, "s.space"
        )
    with pytest.raises(TuningError, match=r"s\.space\.frozen\.blocks: unknown block 'nope'"):
        tuning_space.check_space_against_backbone(
            {"frozen": {"blocks": ["nope"]}}, backbone, "s.space"
        )


def test_surgical_block_indices_below_the_number_of_blocks():
    from tlbench.models.backbones.applications import build_backbone

    backbone = build_backbone(
        {"name": "small_cnn", "weights": "none", "kwargs": {"widths": [4, 8]}}, (16, 16, 3)
    )
    space = resolve_tuning("surgical", {"space": {"block": {"min": 0, "max": 1}}})["space"]
    tuning_space.check_space_against_backbone(space, backbone, "s.space")
    with pytest.raises(TuningError, match=r"s\.space\.block\.max: block index 2 is out of range"):
        tuning_space.check_space_against_backbone(
            {"block": {"min": 0, "max": 2, "step": 1}}, backbone, "s.space"
        )
    with pytest.raises(TuningError, match=r"s\.block\.blocks: unknown block 'top'"):
        tuning_space.check_space_against_backbone({"block": {"blocks": ["top"]}}, backbone, "s")


def test_apply_tuned_sets_values_and_records_them(tiny_prepared):
    spec = apply_tuned(_spec(tiny_prepared, "two_phase"), {"learning_rate": 0.003, "unfreeze": 2})
    resolved = resolve_spec(spec)
    assert resolved["training"]["learning_rate"] == 0.003
    assert resolved["strategy"]["params"]["unfreeze"] == 2
    assert resolved["tuned"] == {"learning_rate": 0.003, "unfreeze": 2}
    assert resolve_spec(_spec(tiny_prepared))["tuned"] is None


def test_objective_is_roc_auc_for_binary_data():
    assert tuning_space.objective_name(2) == "val_roc_auc"
    assert tuning_space.objective_name(3) == "val_accuracy"


# --------------------------------------------------------------------------- searches


@pytest.mark.slow
def test_tiny_two_phase_search_never_reads_the_test_split(tiny_prepared, tmp_path, monkeypatch):
    from tlbench.models import inputs

    opened: list[str] = []
    real = inputs.load_prepared

    class Watched:
        def __init__(self, data):
            self._data = data

        def __getattr__(self, name):
            return getattr(self._data, name)

        def split(self, name):
            opened.append(name)
            return self._data.split(name)

    monkeypatch.setattr(
        inputs, "load_prepared", lambda path, splits=None: Watched(real(path, splits))
    )
    section = {
        "tuner": "random",
        "max_trials": 2,
        "space": {**SPACE, "unfreeze": {"min": 0, "max": 4, "step": 2}},
    }
    result = search.search(
        _spec(tiny_prepared, "two_phase"),
        section,
        tmp_path / "work",
        tmp_path / "best.json",
        tmp_path / "trials.csv",
        names={"dataset": "tiny"},
    )
    assert set(opened) == {"train", "val"}
    assert result["objective"] == "val_accuracy"
    assert result["trials"] == result["completed_trials"] == 2
    tuned = result["tuned"]
    assert set(tuned) == {"learning_rate", "unfreeze"}
    assert 1e-4 <= tuned["learning_rate"] <= 1e-2 and tuned["unfreeze"] in (0, 2, 4)
    assert json.loads((tmp_path / "best.json").read_text())["tuned"] == tuned
    assert tuning_space.read_tuned(tmp_path / "best.json") == tuned
    rows = list(csv.DictReader((tmp_path / "trials.csv").open()))
    assert [r["status"] for r in rows] == ["COMPLETED", "COMPLETED"]
    # two-phase trials fit twice: both phases' epochs are counted
    assert all(float(r["epochs"]) == 2 for r in rows)
    assert max(float(r["score"]) for r in rows) == result["best_score"]
    assert all(0 <= float(r["score"]) <= 1 and float(r["seconds"]) > 0 for r in rows)


@pytest.mark.parametrize(
    ("strategy", "name", "module", "attribute"),
    [
        ("l2_sp", "alpha", "l2_sp", "StartingPointPenalty"),
        ("bss", "eta", "bss", "spectral_shrinkage"),
    ],
)
def test_search_tunes_a_penalty_strength(
    tiny_prepared, tmp_path, monkeypatch, strategy, name, module, attribute
):
    """A random search over l2_sp's alpha or bss's eta: every trial trains with the value
    it drew (the strategy's penalty sees it), and best.json records the chosen one."""
    import importlib

    unit = importlib.import_module(f"tlbench.strategies.{module}")
    seen: list[float] = []
    if strategy == "l2_sp":
        real = unit.StartingPointPenalty

        def record(backbone, head, alpha, beta):
            seen.append(alpha)
            return real(backbone, head, alpha, beta)

    else:
        real_train = unit.BSS.train

        def record(self, ctx):
            seen.append(self.params["eta"])
            return real_train(self, ctx)

        attribute, unit = "train", unit.BSS
    monkeypatch.setattr(unit, attribute, record)
    section = {"tuner": "random", "max_trials": 2, "space": {name: {"min": 1e-4, "max": 1.0}}}
    result = search.search(
        _spec(tiny_prepared, strategy),
        section,
        tmp_path / "work",
        tmp_path / "best.json",
        tmp_path / "trials.csv",
        names={"dataset": "tiny"},
    )
    assert result["completed_trials"] == 2 and set(result["tuned"]) == {name}
    rows = list(csv.DictReader((tmp_path / "trials.csv").open()))
    assert sorted(seen) == sorted(float(r[name]) for r in rows)
    assert len(set(seen)) == 2 and all(1e-4 <= v <= 1.0 for v in seen)
    assert result["tuned"][name] in seen


@pytest.mark.slow
@pytest.mark.parametrize(
    "strategy, space",
    [
        ("surgical", {"block": {"blocks": ["block1", "block2"]}}),
        ("lp_ft", {"ft_learning_rate": {"min": 1e-4, "max": 1e-2}}),
    ],
)
def test_tiny_search_of_a_strategy_strength(tiny_prepared, tmp_path, strategy, space):
    """surgical's block and lp_ft's fine-tuning rate are searched and set in the run spec."""
    params = {"block": "block1"} if strategy == "surgical" else {"grid": [1.0]}
    section = {"tuner": "random", "max_trials": 2, "space": space}
    result = search.search(
        _spec(tiny_prepared, strategy, **params),
        section,
        tmp_path / "work",
        tmp_path / "best.json",
        tmp_path / "trials.csv",
    )
    assert result["completed_trials"] == 2
    (name,) = space
    tuned = result["tuned"]
    assert set(tuned) == {name}
    if strategy == "surgical":
        assert tuned["block"] in ("block1", "block2")
    else:
        assert 1e-4 <= tuned["ft_learning_rate"] <= 1e-2
    applied = resolve_spec(apply_tuned(_spec(tiny_prepared, strategy, **params), tuned))
    assert applied["strategy"]["params"][name] == tuned[name]


@pytest.mark.slow
def test_changed_search_space_starts_afresh(tiny_prepared, tmp_path):
    args = (tmp_path / "work", tmp_path / "best.json", tmp_path / "trials.csv")
    first = {"tuner": "random", "max_trials": 1, "space": SPACE}
    search.search(_spec(tiny_prepared), first, *args)
    events = _events(tmp_path / "work")
    assert [e["event"] for e in events] == ["start", "end"]
    # the same search again: finished, nothing is redone
    again = search.search(_spec(tiny_prepared), first, *args)
    assert _events(tmp_path / "work") == events and again["trials"] == 1
    # another space: a new project, the old state is removed
    changed = {**first, "space": {"learning_rate": {"min": 1e-3, "max": 1e-1}}}
    result = search.search(_spec(tiny_prepared), changed, *args)
    assert result["search_key"] != again["search_key"]
    projects = sorted(p.name for p in (tmp_path / "work").glob("search-*"))
    assert projects == [f"search-{result['search_key']}"]
    assert [e["event"] for e in _events(tmp_path / "work")] == ["start", "end"]
    assert 1e-3 <= result["tuned"]["learning_rate"] <= 1e-1


@pytest.mark.slow
def test_sigkill_mid_search_resumes_without_redoing_finished_trials(tiny_prepared, tmp_path):
    spec, section = tmp_path / "spec.yaml", tmp_path / "tuning.yaml"
    spec.write_text(yaml.safe_dump(_spec(tiny_prepared)))
    section.write_text(yaml.safe_dump({"tuner": "random", "max_trials": 3, "space": SPACE}))
    work = tmp_path / "work"
    command = [
        sys.executable,
        "-m",
        "tlbench.tuning.search",
        str(spec),
        str(section),
        str(work),
        str(tmp_path / "best.json"),
        str(tmp_path / "trials.csv"),
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        # wait until the oracle has the first trial on disk as finished
        while time.monotonic() < deadline and proc.poll() is None:
            done = [p for p in work.glob("search-*/trial_*/trial.json") if _completed(p)]
            if done:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert done, "no trial finished in time"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    finished = {json.loads(p.read_text())["trial_id"] for p in done}
    before = _events(work)
    killed_pid = proc.pid
    assert {e["pid"] for e in before} == {killed_pid}
    assert not (tmp_path / "best.json").exists()

    # the rerun: the same entry point in this process (no second TensorFlow start)
    assert search.main(command[3:]) == 0
    after = _events(work)
    assert after[: len(before)] == before  # the log was only appended to
    new = after[len(before) :]
    assert new and all(e["pid"] != killed_pid for e in new)
    restarted = {e["trial"] for e in new if e["event"] == "start"}
    assert not restarted & finished, (finished, restarted)
    ends = [e["trial"] for e in after if e["event"] == "end"]
    assert len(ends) == len(set(ends)) == 3
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["trials"] == best["completed_trials"] == 3


def test_tables_say_which_values_were_tuned():
    import pandas as pd

    from tlbench.analysis import tables

    base = {
        "status": "ok",
        "test": {"accuracy": 0.9, "loss": 0.3},
        "train": {"accuracy": 0.95, "loss": 0.2},
        "train_seconds": 3.0,
    }
    tuned = {"learning_rate": 0.00123456, "unfreeze": "block_13"}
    rows = []
    for strategy, spec_tuned in (("tp_tuned", tuned), ("tp", None)):
        for seed in (0, 1):
            spec = {"strategy": {"name": "two_phase"}, "tuned": spec_tuned}
            names = {
                "dataset": "d",
                "backbone": "b",
                "strategy": strategy,
                "augmentation": "none",
                "seed": seed,
            }
            rows.append(runs.run_row({**base, "spec": spec, "run": names}))
    df = pd.DataFrame(rows)
    assert list(df["tuned"]) == ["learning_rate=0.001235, unfreeze=block_13"] * 2 + [""] * 2
    general = tables.general_table(df, "d").set_index("Model name")
    assert general.loc["b_tp_tuned", "Tuned"] == "learning_rate=0.001235, unfreeze=block_13"
    assert general.loc["b_tp", "Tuned"] == ""


def test_study_tuning_section_cells_and_specs():
    from tlbench.core.errors import StudyConfigError
    from tlbench.study.load import load_study_file

    root = Path(__file__).resolve().parents[1]
    study = load_study_file(root / "configs/test/tuning_tiny.yaml")
    assert study.tuning_cells() == [("target", "cnn", "two_phase_tuned")]
    tuned_runs = [r for r in study.runs if study.is_tuned(r)]
    assert {r.strategy for r in tuned_runs} == {"two_phase_tuned"} and len(tuned_runs) == 2
    spec = study.tuning_spec("target", "cnn", "two_phase_tuned")
    assert spec["seed"] == 0 and spec["strategy"]["name"] == "two_phase"
    section = study.tuning_section("two_phase_tuned")
    assert section["tuner"] == "hyperband" and section["space"]["unfreeze"]["step"] == 2
    assert study.tuning_path("target", "cnn", "two_phase_tuned").endswith(
        "tuning/target/cnn/two_phase_tuned"
    )
    config = yaml.safe_load((root / "configs/test/tuning_tiny.yaml").read_text())
    config["strategies"]["two_phase_tuned"]["tuning"]["space"]["learning_rate"] = {
        "min": 0.1,
        "max": 0.01,
    }
    from tlbench.study.load import load_study

    with pytest.raises(StudyConfigError, match=r"strategies\.two_phase_tuned\.tuning\.space"):
        load_study(config)


@pytest.mark.shared
def test_hymenoptera_tuning_config_blocks_exist(keras_home):
    """The shipped acceptance config's unfreeze blocks are MobileNetV2's (real weights)."""
    from tlbench.models.backbones.applications import build_backbone
    from tlbench.study.load import load_study_file

    root = Path(__file__).resolve().parents[1]
    study = load_study_file(root / "configs/tuning_hymenoptera.yaml")
    (cell,) = study.tuning_cells()
    spec = study.tuning_spec(*cell)
    size = study.dataset_image_size("hymenoptera")
    backbone = build_backbone(spec["backbone"], (size, size, 3))
    space = study.tuning_section(cell[2])["space"]
    tuning_space.check_space_against_backbone(space, backbone, "space")
    assert backbone.pretrained


def test_trials_table_and_plot(tmp_path):
    import pandas as pd
    from PIL import Image

    rows = [
        {
            "trial": f"{i:04d}",
            "status": "COMPLETED" if i < 5 else "FAILED",
            "score": 0.5 + 0.1 * i if i < 5 else None,
            "epochs": 2,
            "seconds": 1.5,
            "learning_rate": 10 ** (-4 + i / 2),
            "unfreeze": ["block_13", "top", "block_16"][i % 3],
            "budget_epochs": [2, 6][i % 2],
        }
        for i in range(6)
    ]
    trials = tmp_path / "trials.csv"
    pd.DataFrame(rows).to_csv(trials, index=False)
    table = tuning_trials.trials_table(trials)
    assert list(table["trial"][:2]) == ["0004", "0003"] and table["trial"].iloc[-1] == "0005"
    assert table.attrs["best"] == {"score": [0]}
    png = figures_tuning.plot_trials(
        trials,
        tmp_path / "t.png",
        "t",
        "val_accuracy",
        space={"unfreeze": {"blocks": ["top", "block_16", "block_13"]}},
    )
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 1.5 * image.height  # two panels side by side


def test_best_trial_is_chosen_among_the_fully_trained():
    from tlbench.tuning.trials import best_trial

    rows = [
        {"trial": "0", "score": 0.97, "budget_epochs": 2},  # lucky short trial
        {"trial": "1", "score": 0.93, "budget_epochs": 6},
        {"trial": "2", "score": 0.95, "budget_epochs": 6},
    ]
    assert best_trial(rows)["trial"] == "2"
    flat = [{"trial": "a", "score": 0.5, "budget_epochs": None}, {"trial": "b", "score": 0.7}]
    assert best_trial(flat)["trial"] == "b"
