"""Shared fixtures.

Tests that need real data or weights use the ``shared_dir`` fixture: it skips
with a clear reason when ``../shared`` is absent (a user's clone) and fails
instead when ``TLBENCH_REQUIRE_SHARED=1`` (set by ``.ci/run``), so CI never
passes by skipping them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The suite's runs train for a second or two, and its resume tests kill them after a
# given epoch: every epoch is checkpointed here (in every process the tests start).
# The default interval is tested in tests/test_resume.py.
os.environ.setdefault("TLBENCH_CHECKPOINT_SECONDS", "0")
SHARED = Path(os.environ.get("TLBENCH_SHARED", ROOT.parent / "shared")).resolve()
# The machine's test-split ledger (tlbench.analysis.ledger.machine_ledger_path) goes to a
# folder of this session, never the user's data folder (also in the Snakemake processes
# the tests start); each test gets one of its own (``machine_ledger`` below).
os.environ["TLBENCH_DATA_DIR"] = tempfile.mkdtemp(prefix="tlbench-data-")


def require_shared(*relative: str) -> Path:
    """Return ``SHARED/relative`` or skip (fail in CI) naming the missing path."""
    path = SHARED.joinpath(*relative)
    if not path.exists():
        reason = (
            f"needs {path} (real data/weights beside the project, see ../shared/README.md); "
            "absent in this checkout"
        )
        if os.environ.get("TLBENCH_REQUIRE_SHARED") == "1":
            pytest.fail(reason + " but TLBENCH_REQUIRE_SHARED=1", pytrace=False)
        pytest.skip(reason)
    return path


@pytest.fixture(autouse=True)
def machine_ledger(tmp_path_factory, monkeypatch) -> Path:
    """Each test's own machine ledger (``$TLBENCH_DATA_DIR``): counts never mix tests."""
    folder = tmp_path_factory.mktemp("tlbench_data")
    monkeypatch.setenv("TLBENCH_DATA_DIR", str(folder))
    return folder / "test_evaluations.jsonl"


@pytest.fixture
def shared_dir() -> Path:
    return require_shared()


@pytest.fixture
def keras_home(monkeypatch) -> Path:
    """Point Keras's cache at ../shared/keras (real ImageNet weights)."""
    path = require_shared("keras", "models")
    monkeypatch.setenv("KERAS_HOME", str(path.parent))
    return path.parent


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory) -> Path:
    """A small generated, prepared dataset (3 classes, 16x16) for fast unit tests."""
    from tlbench.datasets import make_tiny_prepared

    return make_tiny_prepared(tmp_path_factory.mktemp("tiny"), num_classes=3, size=16, per_class=24)


# Test files whose tests share no module-scoped fixture and are each one or more Snakemake
# processes (dry runs, small studies): under `--dist loadfile` their tests are spread over
# the workers one by one instead of running on one worker as a file.
SPREAD_PER_TEST = frozenset({"tests/test_workflow.py", "tests/test_faults.py"})


def xdist_scope(nodeid: str) -> str:
    """The unit of work of test ``nodeid`` under ``--dist loadfile``: its file, or itself
    for the files in SPREAD_PER_TEST."""
    path = nodeid.split("::", 1)[0]
    return nodeid if path in SPREAD_PER_TEST else path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`make test` (``-n auto --dist loadfile``): each test file is one unit of work on one
    worker, so module-scoped fixtures (trained tiny models, the real SLURM cluster of
    test_slurm.py) are built once, except the files in SPREAD_PER_TEST, whose tests are
    units of their own. Other ``--dist`` modes are left to pytest-xdist."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    # Units go out in collection order (pytest_collection_modifyitems puts the longest
    # first, UNIT_SECONDS), not by their number of tests, which would send them last.
    config.option.loadscopereorder = False

    class FileOrTestScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    return FileOrTestScheduling(config, log)


#: Seconds the longest units of work take (each file or spread test timed alone with
#: ``pytest --durations``, on 2 shared cores; their order is what counts;
#: tests/test_xdist_scheduling.py checks the names exist). Units are handed out longest first, so that the last ones to finish are
#: short and the workers end together; units not listed count 0 and follow in file order.
UNIT_SECONDS = {
    "tests/test_slurm.py": 387,
    "tests/test_workflow.py::test_tiny_study_end_to_end": 232,
    "tests/test_workflow.py::test_compare_on_a_folder_prints_the_answer_and_writes_the_report": 152,
    "tests/test_strategy_behaviour.py": 201,
    "tests/test_engine.py": 195,
    "tests/test_resume.py": 154,
    "tests/test_workflow.py::test_hymenoptera_study_with_imagenet_weights": 146,
    "tests/test_docs.py": 84,
    "tests/test_jax_backend.py": 65,
    "tests/test_backbones.py": 64,
    "tests/test_tuning.py": 59,
    "tests/test_workflow.py::test_pilot_study_seals_the_test_split": 50,
    "tests/test_workflow.py::test_new_users_image_folder_runs_from_a_few_line_config": 48,
    "tests/test_bench_backends.py": 32,
}


def unit_seconds(nodeid: str) -> float:
    """The listed cost of the unit of work of test ``nodeid`` (0 when not listed)."""
    return UNIT_SECONDS.get(xdist_scope(nodeid), 0.0)


def pytest_collection_modifyitems(config, items):
    """On an xdist worker, the units of work are put in the order of their UNIT_SECONDS,
    longest first (the scheduler sends them out in collection order); a file keeps its
    tests together and in order. Serial runs keep the file order."""
    if not hasattr(config, "workerinput"):
        return
    items.sort(key=lambda item: -unit_seconds(item.nodeid))
