"""How `make test` spreads the suite over pytest-xdist workers (tests/conftest.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import conftest
from conftest import (
    SPREAD_PER_TEST,
    UNIT_SECONDS,
    pytest_collection_modifyitems,
    xdist_scope,
)

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
    def __init__(self, nodeid: str):
        self.nodeid = nodeid


class _Config:
    def __init__(self, worker: bool):
        if worker:
            self.workerinput = {"workerid": "gw0"}


def test_units_go_longest_first_on_workers_only(monkeypatch):
    """On a worker the units listed in UNIT_SECONDS lead the collection (sent first),
    longest first, a file's tests together and in order; unlisted units follow in file
    order; a serial run keeps the file order."""
    monkeypatch.setattr(
        conftest,
        "UNIT_SECONDS",
        {"tests/test_b.py": 50.0, "tests/test_workflow.py::test_study": 90.0},
    )
    names = [
        "tests/test_a.py::test_1",
        "tests/test_b.py::test_1",
        "tests/test_b.py::test_2",
        "tests/test_workflow.py::test_dry_run[x]",
        "tests/test_workflow.py::test_study",
    ]
    items = [_Item(n) for n in names]
    pytest_collection_modifyitems(_Config(worker=True), items)
    assert [i.nodeid for i in items] == [names[4], names[1], names[2], names[0], names[3]]
    items = [_Item(n) for n in names]
    pytest_collection_modifyitems(_Config(worker=False), items)
    assert [i.nodeid for i in items] == names


def test_listed_units_exist():
    """Every UNIT_SECONDS entry names a test file, or a test function defined in a
    SPREAD_PER_TEST file (a renamed test must not silently lose its place)."""
    assert UNIT_SECONDS, "no unit listed: the long ones would be sent in file order"
    for unit, seconds in UNIT_SECONDS.items():
        assert seconds > 0, unit
        path, _, test = unit.partition("::")
        assert (ROOT / path).is_file(), f"{unit}: no file {path}"
        if test:
            assert path in SPREAD_PER_TEST, f"{unit}: {path} is one unit, list the file"
            tree = ast.parse((ROOT / path).read_text())
            defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
            assert test.split("[", 1)[0] in defined, f"{unit}: no test {test} in {path}"


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
