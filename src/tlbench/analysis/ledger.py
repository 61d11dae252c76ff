"""The test-split ledger: one line per look at a dataset's test split.

Every run that evaluates the test split (every run that is not a pilot run)
appends one JSON line to ``<results>/test_evaluations.jsonl`` (:data:`NAME`):
the dataset, the fingerprint of its prepared data (sha256 of the prepared
folder's ``manifest.json``), the hash of the run spec (:func:`spec_hash`), the
UTC time and the code version. The file lives beside, not inside, the run
folders, so deleting or rerunning a run does not remove the record of its
earlier look. :func:`looks` counts, per dataset, how many distinct run specs
have been evaluated on its test split: final numbers that follow many looks
are chosen on test however carefully each look was made.

Appending is safe from concurrent jobs on one machine and on NFS-like shared
folders that honour ``flock``: each entry is one ``os.write`` of one line to a
file opened with ``O_APPEND``, under an exclusive lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tlbench
from tlbench.core.hashing import sha256_file
from tlbench.core.provenance import git_state, utc_now

if TYPE_CHECKING:
    import pandas as pd

#: File name of the ledger in a study's results folder.
NAME = "test_evaluations.jsonl"
FIELDS = ("dataset", "prepared_fingerprint", "spec_hash", "time_utc", "code")


def ledger_path(results: str | os.PathLike) -> Path:
    """The ledger of a study's results folder."""
    return Path(results) / NAME


def spec_hash(spec: Mapping[str, Any]) -> str:
    """sha256 of the resolved run spec without its display names (``run``)."""
    content = {k: v for k, v in spec.items() if k != "run"}
    blob = json.dumps(content, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def prepared_fingerprint(prepared: str | os.PathLike) -> str:
    """sha256 of a prepared dataset's ``manifest.json`` (counts, classes, sources, split seed)."""
    manifest = Path(prepared) / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"prepared dataset {prepared} has no manifest.json to fingerprint")
    return sha256_file(manifest)


def entry(spec: Mapping[str, Any], time_utc: str | None = None) -> dict[str, Any]:
    """The ledger line of one test evaluation of the run ``spec`` (resolved)."""

    git = git_state()
    return {
        "dataset": spec["dataset"]["name"],
        "prepared": str(spec["dataset"]["prepared"]),
        "prepared_fingerprint": prepared_fingerprint(spec["dataset"]["prepared"]),
        "spec_hash": spec_hash(spec),
        "run": spec.get("run"),
        "time_utc": time_utc or utc_now(),
        "code": {
            "tlbench": tlbench.__version__,
            "git_commit": git.get("commit"),
            "git_dirty": git.get("dirty"),
        },
    }


def append(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Append ``record`` as one line: one write, ``O_APPEND``, under ``flock``."""
    line = (json.dumps(dict(record), sort_keys=True, default=str) + "\n").encode()
    if line.count(b"\n") != 1:
        raise ValueError("a ledger record must serialise to one line")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"{path}: wrote {written} of {len(line)} bytes of a ledger line")
        os.fsync(fd)
    finally:
        os.close(fd)  # also releases the lock


def record(path: str | os.PathLike, metrics: Mapping[str, Any]) -> dict[str, Any] | None:
    """Append the ledger line of a finished run's ``metrics`` when it evaluated the
    test split; a pilot run (or a failed run, never evaluated) appends nothing.
    Returns the line written, or None."""
    if metrics.get("pilot") or not metrics.get("test"):
        return None
    line = entry(metrics["spec"], metrics.get("finished_utc"))
    append(path, line)
    return line


def read(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The ledger's lines; a ledger that does not exist has none (no test look yet)."""
    path = Path(path)
    if not path.exists():
        return []
    lines = []
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        try:
            item = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not a JSON ledger line: {error}") from None
        missing = [f for f in FIELDS if f not in item]
        if missing:
            raise ValueError(f"{path}:{number}: ledger line lacks {', '.join(missing)}")
        lines.append(item)
    return lines


def looks(path: str | os.PathLike, datasets: list[str] | None = None) -> pd.DataFrame:
    """Per dataset: distinct run specs evaluated on its test split, evaluations,
    prepared versions (fingerprints) and the first and last look. ``datasets``:
    rows for these too (0 looks when the ledger has none), in this order first."""
    # deferred: pandas only for the table; the parse-time check imports this module
    import pandas as pd

    columns = ["dataset", "distinct run specs", "test evaluations", "prepared versions",
               "first", "last"]  # fmt: skip
    lines = read(path)
    df = pd.DataFrame(lines, columns=list(FIELDS))
    table = (
        df.groupby("dataset", sort=True)
        .agg(
            **{
                "distinct run specs": ("spec_hash", "nunique"),
                "test evaluations": ("spec_hash", "size"),
                "prepared versions": ("prepared_fingerprint", "nunique"),
                "first": ("time_utc", "min"),
                "last": ("time_utc", "max"),
            }
        )
        .reset_index()
    )
    table = table[columns]
    if datasets is not None:
        known = set(table["dataset"].astype(str))
        missing = [
            {"dataset": d, "distinct run specs": 0, "test evaluations": 0, "prepared versions": 0}
            for d in datasets
            if d not in known
        ]
        if missing:
            table = pd.concat([table, pd.DataFrame(missing, columns=columns)], ignore_index=True)
        order = {d: i for i, d in enumerate(datasets)}
        table = table.sort_values(
            "dataset", key=lambda s: s.map(lambda d: order.get(d, len(order))), kind="stable"
        ).reset_index(drop=True)
    return table


def looks_sentence(table: pd.DataFrame, datasets: list[str] | None = None) -> str:
    """``gtsrb: 24 distinct run specs evaluated on its test split (30 evaluations)``; ..."""
    rows = {str(r["dataset"]): r for _, r in table.iterrows()}
    names = datasets if datasets is not None else sorted(rows)
    parts = []
    for name in names:
        row = rows.get(name)
        if row is None or int(row["test evaluations"]) == 0:
            parts.append(f"{name}: none (test split not evaluated)")
            continue
        parts.append(
            f"{name}: {int(row['distinct run specs'])} distinct run specs "
            f"({int(row['test evaluations'])} evaluations"
            + (
                f", {int(row['prepared versions'])} versions of the prepared data"
                if int(row["prepared versions"]) > 1
                else ""
            )
            + ")"
        )
    return "; ".join(parts) if parts else "no test evaluations recorded"
