"""benchmarks/bench_verdict_calibration.py: the simulator's truth is what it claims, and the
script runs end to end (tiny replicate counts) into a page whose tables are the JSON's."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    """A module of benchmarks/ (they import each other by name, as the script does)."""
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def sim():
    return _load("verdict_sim")


@pytest.fixture(scope="module")
def bench():
    return _load("bench_verdict_calibration")


TERMS = ("sd_group", "sd_group_cell", "sd_image", "sd_cell_image", "sd_seed", "sd_subset")


def _check_truth(sim, scenario, subsets, studies):
    """The mean over ``studies`` of each cell's accuracy and of each difference from cell
    0 is the scenario's truth within 4 standard errors of that mean."""
    rng = np.random.default_rng(7)
    means = np.array(
        [[m.mean() for m in sim.simulate(scenario, rng, subsets).correct] for _ in range(studies)]
    )
    differences = means[:, 1:] - means[:, :1]
    for observed, truth in ((means, scenario.accuracies), (differences, scenario.truth)):
        error = observed.mean(axis=0) - np.array(truth)
        se = observed.std(axis=0, ddof=1) / np.sqrt(len(observed))
        assert np.all(np.abs(error) < 4 * np.maximum(se, 1e-4)), (error, se)


@pytest.mark.parametrize(
    ("term", "subsets"), [(t, "seed") for t in TERMS] + [("sd_subset", "dataset")]
)
def test_each_source_of_variation_keeps_the_truth(sim, term, subsets):
    """One source of variation alone, large (sd 1 on the probit scale: left out of the
    scaling it would move the accuracy 0.80 to about 0.72): the simulated accuracies and
    differences are the claimed ones."""
    quiet = dict.fromkeys(TERMS, 0.0)
    scenario = sim.Scenario(
        term, "test", reference=0.8, differences=(0.0, 2.0, -3.0), margin=0.02,
        images=600, group_size=30, seeds=2, **{**quiet, term: 1.0},
    )  # fmt: skip
    _check_truth(sim, scenario, subsets, 200)


@pytest.mark.parametrize("subsets", ["dataset", "seed"])
def test_all_sources_of_variation_together_keep_the_truth(sim, subsets):
    scenario = sim.Scenario(
        "truth", "test", reference=0.8, differences=(0.0, 2.0, -3.0), margin=0.02,
        images=3000, group_size=30, seeds=2, sd_group=0.8, sd_group_cell=0.4,
        sd_seed=0.3, sd_subset=0.5,
    )  # fmt: skip
    _check_truth(sim, scenario, subsets, 400)
    assert scenario.truth == pytest.approx((0.0, 0.04, -0.06))


def test_seed_scale_sets_each_cells_seed_spread_and_keeps_the_truth(sim):
    """``seed_scale``: cell 1's seeds spread tenfold cell 0's on the probit scale (about
    eightfold in accuracy, where the test images' own noise adds to both); the
    accuracies and differences stay the claimed ones."""
    scenario = sim.Scenario(
        "uneven", "test", reference=0.8, differences=(0.0, 2.0), margin=0.02, images=3000,
        seeds=2, sd_seed=0.1, seed_scale=(1.0, 10.0, 1.0),
    )  # fmt: skip
    _check_truth(sim, scenario, "seed", 300)
    rng = np.random.default_rng(5)
    study = sim.simulate(scenario, rng, "seed", seeds=40)
    sd = [m.mean(axis=1).std(ddof=1) for m in study.correct]
    assert sd[1] > 5 * max(sd[0], sd[2]), sd
    with pytest.raises(ValueError, match="seed_scale"):
        replace(scenario, seed_scale=(1.0, 10.0))
    with pytest.raises(ValueError, match="seed_scale"):
        replace(scenario, seed_scale=(1.0, 0.0, 1.0))


def test_budget_subsets_follow_the_seed_only_when_asked(sim):
    """One subset per dataset: the runs of a cell share it, so it adds nothing to the
    spread across seeds; one per seed: it does."""
    scenario = sim.Scenario("budget", "test", images=3000, seeds=8, sd_seed=0.0, sd_subset=0.5)
    spread = {}
    for subsets in ("dataset", "seed"):
        rng = np.random.default_rng(3)
        study = sim.simulate(scenario, rng, subsets)
        spread[subsets] = np.mean([m.mean(axis=1).std(ddof=1) for m in study.correct])
    assert spread["dataset"] < 0.01 < 0.05 < spread["seed"], spread


def test_truth_classes_and_bad_scenarios(sim):
    s = sim.Scenario("c", "test", differences=(0.0, 0.5, -2.0), margin=0.01)
    assert [s.truth_class(d) for d in s.truth] == ["zero", "inside", "beyond"]
    with pytest.raises(ValueError, match="equals the margin"):
        replace(s, differences=(1.0,)).truth_class(0.01)
    with pytest.raises(ValueError, match="multiple of group_size"):
        sim.Scenario("g", "test", images=100, group_size=30)
    with pytest.raises(ValueError, match="subsets must be"):
        sim.simulate(s, np.random.default_rng(0), "run")


def test_rate_widens_for_comparisons_that_share_a_study(bench):
    """Hits that come together in a study are fewer independent trials than their count."""
    spread = np.tile([[1, 0, 0, 0]], (50, 1))
    together = np.repeat([[1, 1, 1, 1]] * 1 + [[0, 0, 0, 0]] * 3, 50 // 4 + 1, axis=0)[:50]
    a, b = bench.rate(spread), bench.rate(together)
    assert a["rate"] == pytest.approx(0.25) and b["trials"] == a["trials"] == 200
    assert (b["high"] - b["low"]) > 1.5 * (a["high"] - a["low"])


#: The page's acceptance tables: title -> (where in a scenario's results, the threshold).
ACCEPTANCE = {
    "coverage of differences": (("metrics", "coverage_difference"), lambda r: r >= 0.93),
    "coverage of accuracies": (("metrics", "coverage_accuracy"), lambda r: r >= 0.93),
    "P(equivalent | beyond margin)": (("outcomes", "beyond", "equivalent"), lambda r: r <= 0.05),
    "family-wise P(better or worse | zero)": (("metrics", "family_wise"), lambda r: r <= 0.05),
    "power": (("metrics", "power"), None),
}


def _has_commit(commit: str) -> bool:
    probe = ["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"]
    return subprocess.run(probe, capture_output=True).returncode == 0


def test_script_runs_end_to_end_and_the_page_is_the_json(bench, tmp_path):
    """The "before" column (af49858 from this repository's git, in its own process) on two
    scenarios, 3 studies each: the page is generated from the JSON and each acceptance
    table's cells are the JSON's rates; the old word "tied" is split into equivalent and
    inconclusive, nothing else, and both occur (small-3's margin is within reach)."""
    commit = _load("verdict_adapters").BEFORE_COMMIT
    if not _has_commit(commit):
        pytest.skip(f"this checkout's git history lacks {commit} (the code before issue 34)")
    argv = ["--studies", "3", "--reps", "30", "--versions", "before"]
    argv += ["--scenarios", "small-3,tracks-3", "--out", str(tmp_path)]
    assert bench.main([*argv, "--reuse", str(tmp_path / "work")]) == 0  # a new work folder
    report = json.loads((tmp_path / "verdict_calibration.json").read_text())
    page = (tmp_path / "verdict_calibration.md").read_text()
    assert page == bench.markdown(report)
    assert [e["name"] for e in report["scenarios"]] == ["small-3", "tracks-3"]
    for title, (path, limit) in ACCEPTANCE.items():
        table = page.split(f"### {title}\n", 1)[1].strip().split("\n\n")[0]
        rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()[2:]}
        assert sorted(rows) == sorted(e["name"] for e in report["scenarios"])
        for entry in report["scenarios"]:
            value = entry["results"]["before"]
            for key in path:
                value = value[key]
            shown = rows[entry["name"]].split(" | ")[1]
            numbers = [float(x) for x in re.findall(r"\d\.\d{3}", shown)]
            assert numbers == [round(value[k], 3) for k in ("rate", "low", "high")], shown
            fails = limit is not None and not limit(value["rate"])
            assert shown.endswith("**fails** |") == fails, (title, shown, value)
    for entry in report["scenarios"]:
        for truth, rates in entry["results"]["before"]["outcomes"].items():
            said = rates["said"]
            assert set(said) <= {"better", "worse", "tied"}, said
            counts = {
                o: round(rates[o]["rate"] * rates[o]["trials"])
                for o in bench.verdict_adapters.OUTCOMES
            }
            assert said.get("tied", 0) == counts["equivalent"] + counts["inconclusive"]
            margin, truths = entry["margin"], np.abs(entry["truth"])
            members = {"zero": truths < 1e-12, "beyond": truths > margin}
            members["inside"] = ~members["zero"] & (truths < margin)
            assert sum(counts.values()) == rates["better"]["trials"] == 3 * members[truth].sum()
    # --reuse: the kept figures, not a new run; other settings are refused
    again = tmp_path / "again"
    assert bench.main([*argv[:-1], str(again), "--reuse", report["work_folder"]]) == 0
    second = json.loads((again / "verdict_calibration.json").read_text())
    assert second["scenarios"] == report["scenarios"]
    assert second["versions"] == report["versions"]  # its process time: not run again
    with pytest.raises(SystemExit, match="had settings"):
        bench.main(["--studies", "4", *argv[2:], "--reuse", report["work_folder"]])
    small = report["scenarios"][0]["results"]["before"]["outcomes"]
    assert small["inside"]["equivalent"]["rate"] > 0 and small["zero"]["inconclusive"]["rate"] > 0


def _after_src() -> Path:
    """The code after issue 34: this tree's src, or ``$VERDICT_AFTER_SRC`` (another
    checkout's, e.g. while the verdict's rewrite is on its own branch)."""
    return Path(os.environ.get("VERDICT_AFTER_SRC", ROOT / "src"))


def test_after_column_runs_and_says_only_the_four_outcomes(bench, tmp_path):
    """The "after" column, 3 studies of two scenarios: only the four outcomes, and a cell
    with one seed of a stochastic strategy is never better, worse or equivalent."""
    src = _after_src()
    if not (src / "tlbench" / "analysis" / "verdict" / "intervals.py").exists():
        pytest.skip(f"{src} has not the verdict of issue 34 (analysis/verdict/intervals.py)")
    argv = ["--studies", "3", "--reps", "30", "--versions", "after", "--after-src", str(src)]
    argv += ["--scenarios", "independent-1,tracks-3", "--out", str(tmp_path)]
    assert bench.main([*argv, "--reuse", str(tmp_path / "work")]) == 0
    report = json.loads((tmp_path / "verdict_calibration.json").read_text())
    assert (tmp_path / "verdict_calibration.md").read_text() == bench.markdown(report)
    for entry in report["scenarios"]:
        for rates in entry["results"]["after"]["outcomes"].values():
            assert set(rates["said"]) <= {"better", "worse", "equivalent", "inconclusive"}
    one_seed = report["scenarios"][0]["results"]["after"]["outcomes"]
    assert all(r["inconclusive"]["rate"] == 1.0 for r in one_seed.values()), one_seed
