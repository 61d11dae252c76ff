"""The looks at each test split, counted from the test-split ledgers
(:mod:`tlbench.analysis.ledger`): per dataset, how many distinct run specs any study on
this machine has evaluated on the same test images (:func:`count_looks`), as a table
(:func:`looks_table`) and a sentence for the pages (:func:`looks_sentence`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlbench.analysis.ledger import (
    evaluation_keys,
    fold,
    machine_ledger_path,
    read,
    test_fingerprint,
    test_images,
)

if TYPE_CHECKING:
    import pandas as pd


def _shown(path: str | os.PathLike) -> str:
    """A path as a page shows it: relative to the working folder when inside it, the
    home folder as ``~``."""
    path = Path(path).resolve()
    for base, prefix in ((Path.cwd(), ""), (Path.home(), "~/")):
        if path.is_relative_to(base):
            return prefix + path.relative_to(base).as_posix()
    return str(path)


def count_looks(
    path: str | os.PathLike,
    prepared: Mapping[str, str | os.PathLike],
    machine: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """The looks at the test split of each dataset of a study, across this machine.

    ``path``: the study's ledger; ``prepared``: its datasets' prepared folders, in the
    order the answer lists them; ``machine``: the machine's ledger (default
    :func:`machine_ledger_path`). The study's lines are first folded into the machine's
    ledger (:func:`fold`). A dataset's looks are the evaluations, in any study on this
    machine, of a test split with the same content (``test_fingerprint``) as the study's
    prepared folder holds, or of the same test images prepared at another size
    (``test_images``, where both preparations recorded it), with every line of the study's own ledger for that dataset
    (an earlier preparation too). Evaluations are counted once (:func:`evaluation_keys`).

    Returns (JSON-serialisable)::

        {"machine_ledger": "~/.local/share/tlbench/test_evaluations.jsonl",
         "study_ledger": "results/x/test_evaluations.jsonl",
         "datasets": [{"dataset": "gtsrb", "test_fingerprint": "<sha256>",
                       "test_images": "<sha256>" | None,
                       "run_specs": 12, "evaluations": 14, "prepared_versions": 1,
                       "ledgers": ["results/x/test_evaluations.jsonl", ...],
                       "first": "<utc>" | None, "last": "<utc>" | None,
                       "this_study": {"run_specs": 7, "evaluations": 7}}, ...]}

    ``run_specs``: distinct run specs evaluated on that test split (the count a page
    shows); ``ledgers``: the study ledgers the looks were written beside.
    """
    machine = Path(machine) if machine is not None else machine_ledger_path()
    fold(path, prepared, machine)
    study_lines = read(path)
    study_keys = evaluation_keys(study_lines, str(Path(path).resolve()))
    machine_lines = read(machine)
    machine_keys = evaluation_keys(machine_lines)
    own = _shown(path)
    datasets = []
    for name, folder in prepared.items():
        fingerprint, images = test_fingerprint(folder), test_images(folder)
        mine = {
            key: {**x, "ledger": own}
            for key, x in zip(study_keys, study_lines, strict=True)
            if x["dataset"] == name
        }
        found = {
            key: {**x, "ledger": _shown(x["ledger"]) if x.get("ledger") else None}
            for key, x in zip(machine_keys, machine_lines, strict=True)
            if (fingerprint is not None and x.get("test_fingerprint") == fingerprint)
            or (images is not None and x.get("test_images") == images)
        }
        lines = {**found, **mine}
        times = sorted(str(x["time_utc"]) for x in lines.values())
        datasets.append(
            {
                "dataset": name,
                "test_fingerprint": fingerprint,
                "test_images": images,
                "run_specs": len({x["spec_hash"] for x in lines.values()}),
                "evaluations": len(lines),
                "prepared_versions": len({x["prepared_fingerprint"] for x in lines.values()}),
                "ledgers": sorted({x["ledger"] for x in lines.values() if x["ledger"]}),
                "first": times[0] if times else None,
                "last": times[-1] if times else None,
                "this_study": {
                    "run_specs": len({x["spec_hash"] for x in mine.values()}),
                    "evaluations": len(mine),
                },
            }
        )
    return {"machine_ledger": _shown(machine), "study_ledger": own, "datasets": datasets}


def study_only_looks(table: pd.DataFrame) -> dict[str, Any]:
    """:func:`looks`'s answer from the table of a study's own ledger that sections wrote
    before the machine's ledger (columns ``dataset``, ``distinct run specs``, ``test
    evaluations``, ``prepared versions``, ``first``, ``last``): ``machine_ledger`` None,
    every look this study's."""
    import pandas as pd  # deferred: pandas only for the tables

    def value(row: Any, column: str) -> Any:
        return None if column not in row or pd.isna(row[column]) else row[column]

    datasets = []
    for _, row in table.iterrows():
        specs, evaluations = int(row["distinct run specs"]), int(row["test evaluations"])
        datasets.append(
            {
                "dataset": str(row["dataset"]),
                "test_fingerprint": None,
                "run_specs": specs,
                "evaluations": evaluations,
                "prepared_versions": int(value(row, "prepared versions") or 0),
                "ledgers": [],
                "first": None if value(row, "first") is None else str(row["first"]),
                "last": None if value(row, "last") is None else str(row["last"]),
                "this_study": {"run_specs": specs, "evaluations": evaluations},
            }
        )
    return {"machine_ledger": None, "study_ledger": None, "datasets": datasets}


def looks_table(counted: Mapping[str, Any]) -> pd.DataFrame:
    """:func:`looks`'s datasets as a table (one row each)."""
    rows = [
        {
            "dataset": d["dataset"],
            "distinct run specs": d["run_specs"],
            "test evaluations": d["evaluations"],
            "this study's run specs": d["this_study"]["run_specs"],
            "results folders": len(d["ledgers"]),
            "prepared versions": d["prepared_versions"],
            "first": d["first"],
            "last": d["last"],
        }
        for d in counted["datasets"]
    ]
    import pandas as pd  # deferred: pandas only for the tables

    return pd.DataFrame(rows, columns=["dataset", "distinct run specs", "test evaluations",
                                       "this study's run specs", "results folders",
                                       "prepared versions", "first", "last"])  # fmt: skip


def total_looks(counted: Mapping[str, Any], earlier: Mapping[str, Any] | None = None) -> dict:
    """Per dataset, the distinct run specs evaluated on its test split on this machine
    (:func:`looks`) plus the ``earlier`` looks a config names (``earlier_test_looks``:
    ``{dataset: {count, note}}``, made before any ledger)."""
    earlier = earlier or {}
    return {
        d["dataset"]: d["run_specs"] + int(earlier.get(d["dataset"], {}).get("count", 0))
        for d in counted["datasets"]
    }


def looks_sentence(counted: Mapping[str, Any], earlier: Mapping[str, Any] | None = None) -> str:
    """``gtsrb: 24 distinct run specs (30 evaluations; 7 of the run specs by this study,
    the others beside results/b/test_evaluations.jsonl), plus 9 earlier looks that no
    ledger holds (...): 33 in all``; ..."""
    earlier = earlier or {}
    parts = []
    for d in counted["datasets"]:
        before = earlier.get(d["dataset"])
        unmatched = (
            " (its prepared folder holds no test split: looks by other studies cannot be "
            "matched to it)"
            if d["test_fingerprint"] is None and counted["machine_ledger"] is not None
            else ""
        )
        if d["evaluations"] == 0:
            text = f"{d['dataset']}: none in the ledgers (test split not evaluated){unmatched}"
        else:
            others = [x for x in d["ledgers"] if x != counted["study_ledger"]]
            mine = d["this_study"]
            text = (
                f"{d['dataset']}: {d['run_specs']} distinct run specs ({d['evaluations']} "
                "evaluations"
                + (
                    ""  # counted on the study's own ledger (study_only_looks)
                    if counted["machine_ledger"] is None
                    else f"; {mine['run_specs']} of the run specs by this study"
                    + (
                        f", the others beside {', '.join(others)}"
                        if others
                        else ", none by another study"
                    )
                )
                + (
                    f"; {d['prepared_versions']} versions of the prepared data"
                    if d["prepared_versions"] > 1
                    else ""
                )
                + ")"
                + unmatched
            )
        if before:
            text += (
                f", plus {int(before['count'])} earlier looks that no ledger holds "
                f"({before['note'].rstrip('.')}): {total_looks(counted, earlier)[d['dataset']]} "
                "in all"
            )
        parts.append(text)
    return "; ".join(parts) if parts else "no test evaluations recorded"
