"""How `make test` spreads the suite over pytest-xdist workers (tests/conftest.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import SPREAD_PER_TEST, pytest_collection_modifyitems, xdist_scope

ROOT = Path(__file__).resolve().parents[1]


def test_files_stay_one_unit_except_the_spread_ones():
    """A file's tests share one worker (its module fixtures, the SLURM cluster are built
    once); the tests of a spread file are units of their own."""
    slurm = [
        "tests/test_slurm.py::test_workstation_profile_dry_run",
        "tests/test_slurm.py::test_study_on_slurm_survives_cancelled_job",
    ]
    assert {xdist_scope(n) for n in slurm} == {"tests/test_slurm.py"}
    engine = ["tests/test_engine.py::test_every_strategy_runs[scratch]", "tests/test_engine.py::x"]
    assert {xdist_scope(n) for n in engine} == {"tests/test_engine.py"}
    dry = [
        "tests/test_workflow.py::test_dry_run[config.yaml]",
        "tests/test_workflow.py::test_dry_run[configs/test/tiny.yaml]",
    ]
    assert [xdist_scope(n) for n in dry] == dry
    assert "tests/test_slurm.py" not in SPREAD_PER_TEST


class _Item:
    def __init__(self, nodeid: str, slow: bool = False):
        self.nodeid, self.slow = nodeid, slow

    def get_closest_marker(self, name: str):
        return pytest.mark.slow if name == "slow" and self.slow else None


class _Config:
    def __init__(self, worker: bool):
        if worker:
            self.workerinput = {"workerid": "gw0"}


def test_spread_slow_tests_go_first_on_workers_only():
    """On a worker the long spread tests lead the collection (sent first); a slow test of
    an ordinary file keeps its place; a serial run keeps the file order."""
    names = [
        ("tests/test_engine.py::test_a", True),
        ("tests/test_faults.py::test_b", False),
        ("tests/test_workflow.py::test_dry_run[x]", False),
        ("tests/test_workflow.py::test_tiny_study_end_to_end", True),
    ]
    items = [_Item(n, slow) for n, slow in names]
    pytest_collection_modifyitems(_Config(worker=True), items)
    assert [i.nodeid for i in items] == [names[3][0], names[0][0], names[1][0], names[2][0]]
    items = [_Item(n, slow) for n, slow in names]
    pytest_collection_modifyitems(_Config(worker=False), items)
    assert [i.nodeid for i in items] == [n for n, _ in names]


def _shared_fixtures(path: Path) -> list[str]:
    """Fixtures of ``path`` with a scope wider than one test (function)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if isinstance(decorator, ast.Call) and ast.unparse(decorator.func).endswith("fixture"):
                for keyword in decorator.keywords:
                    if keyword.arg == "scope" and ast.literal_eval(keyword.value) != "function":
                        found.append(f"{node.name} (scope={ast.literal_eval(keyword.value)!r})")
    return found


def test_spread_files_have_no_shared_fixtures():
    """Tests spread one by one would rebuild a module fixture on every worker (and
    between the file's tests on one worker): such a file must leave SPREAD_PER_TEST."""
    for name in sorted(SPREAD_PER_TEST):
        path = ROOT / name
        assert path.is_file(), f"{name} in SPREAD_PER_TEST does not exist"
        assert _shared_fixtures(path) == [], f"{name} defines shared fixtures; unlist it"
