"""The test-split ledger: one line per look at a dataset's test split.

Every run that evaluates the test split (every run that is not a pilot run)
appends one JSON line to ``<results>/test_evaluations.jsonl`` (:data:`NAME`):
the dataset, the fingerprint of its prepared data (:func:`prepared_fingerprint`:
content only, no timing field), the hash of the run spec (:func:`spec_hash`), the
evaluation it records (:func:`evaluation_id`), the UTC time and the code version.
The file lives beside, not inside, the run folders, so deleting or rerunning a
run does not remove the record of its earlier look. :func:`looks` counts, per
dataset, how many distinct run specs have been evaluated on its test split:
final numbers that follow many looks are chosen on test however carefully each
look was made.

The engine writes the line *before* it commits the run folder
(:func:`tlbench.training.engine.run`'s ``before_commit``): a write that fails
fails the run with no run folder (a retry resumes from its checkpoints), never a
finished run that Snakemake then deletes. A commit that fails after the line
was written leaves a line whose retry writes a second one of the same
evaluation (the same run spec and first attempt): counted once.

Appending is safe from concurrent jobs on one machine and on NFS-like shared
folders that honour ``flock``: each entry is one ``os.write`` of one line to a
file opened with ``O_APPEND``, under an exclusive lock. Where ``flock`` is not
supported (``ENOLCK``, ``EOPNOTSUPP``: Lustre mounted without it) the line is
appended with ``O_APPEND`` alone, with a :class:`LedgerWarning`. A torn last
line (a writer killed mid-write, a full disk) is cut off by the next append and
skipped by :func:`read`, each with a warning; a write cut short is undone.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tlbench
from tlbench.core.errors import LedgerWarning
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


#: Suffixes of the manifest's timing fields (``prepare_seconds``, ...): not content.
TIMING_SUFFIXES = ("_seconds", "_utc")


def _content(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _content(v)
            for k, v in value.items()
            if not (isinstance(k, str) and k.endswith(TIMING_SUFFIXES))
        }
    if isinstance(value, list):
        return [_content(v) for v in value]
    return value


def prepared_fingerprint(prepared: str | os.PathLike) -> str:
    """sha256 of a prepared dataset's ``manifest.json`` (counts, classes, sources, split
    seed, options) without its timing fields (keys ending in :data:`TIMING_SUFFIXES`):
    preparing the same data again gives the same fingerprint."""
    manifest = Path(prepared) / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"prepared dataset {prepared} has no manifest.json to fingerprint")
    content = _content(json.loads(manifest.read_text()))
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def evaluation_id(spec: Mapping[str, Any], first_attempt_utc: str | None) -> str | None:
    """One evaluation of the run ``spec``: its hash and the start of its first attempt.
    Retries of one run (resumed from its work folder, e.g. after a failed commit) share
    it; a run trained again from scratch gets another."""
    if not first_attempt_utc:
        return None
    return hashlib.sha256(f"{spec_hash(spec)} {first_attempt_utc}".encode()).hexdigest()[:16]


def entry(
    spec: Mapping[str, Any], time_utc: str | None = None, evaluation: str | None = None
) -> dict[str, Any]:
    """The ledger line of one test evaluation of the run ``spec`` (resolved)."""

    git = git_state()
    return {
        "dataset": spec["dataset"]["name"],
        "prepared": str(spec["dataset"]["prepared"]),
        "prepared_fingerprint": prepared_fingerprint(spec["dataset"]["prepared"]),
        "spec_hash": spec_hash(spec),
        "run": spec.get("run"),
        "evaluation": evaluation,
        "time_utc": time_utc or utc_now(),
        "code": {
            "tlbench": tlbench.__version__,
            "git_commit": git.get("commit"),
            "git_dirty": git.get("dirty"),
        },
    }


#: ``flock`` errors of a file system that does not support it: the line is appended
#: without the lock (one ``O_APPEND`` write), with a warning.
NO_FLOCK = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL})


def _lock(fd: int, path: Path) -> bool:
    """Lock the ledger; False (warned) where the file system has no ``flock``."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as error:
        if error.errno not in NO_FLOCK:
            raise
        warnings.warn(
            f"{path}: flock is not supported here ({error.strerror or error}); the ledger "
            "line is appended with O_APPEND alone, one write",
            LedgerWarning,
            stacklevel=3,
        )
        return False
    return True


def _torn(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"


def _cut_torn_tail(fd: int, path: Path) -> None:
    """Cut a last line without its newline (a torn write) off the file, with a warning."""
    if not _torn(fd):
        return
    size = os.fstat(fd).st_size
    start = max(0, size - (1 << 16))
    tail = os.pread(fd, size - start, start)
    keep = start + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
    if keep == 0 and start > 0:  # a line over 64 KiB: not ours, leave it to read() to name
        raise ValueError(f"{path}: its last line is over 64 KiB and has no newline")
    os.ftruncate(fd, keep)
    warnings.warn(
        f"{path}: torn last line {tail[keep - start :][:80]!r} ({size - keep} bytes) "
        "removed before appending",
        LedgerWarning,
        stacklevel=3,
    )


def append(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Append ``record`` as one line: one write, ``O_APPEND``, under ``flock`` (see the
    module docstring for a file system without it and for a torn last line)."""
    line = (json.dumps(dict(record), sort_keys=True, default=str) + "\n").encode()
    if line.count(b"\n") != 1:
        raise ValueError("a ledger record must serialise to one line")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        locked = _lock(fd, path)
        if locked:
            _cut_torn_tail(fd, path)
        elif _torn(fd):  # unlocked, a torn tail may be a write in progress: not cut,
            line = b"\n" + line  # ended instead (read() skips it, with a warning)
        size = os.fstat(fd).st_size
        written = os.write(fd, line)
        if written != len(line):
            if locked:  # no torn line left behind (unlocked, another line may follow it)
                os.ftruncate(fd, size)
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
    attempts = metrics.get("attempts") or [{}]
    evaluation = evaluation_id(metrics["spec"], attempts[0].get("started_utc"))
    line = entry(metrics["spec"], metrics.get("finished_utc"), evaluation)
    append(path, line)
    return line


def read(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The ledger's lines; a ledger that does not exist has none (no test look yet).
    A torn last line (no newline, not JSON) is skipped with a warning; any other line
    that is not a ledger line is an error naming it."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    rows = text.splitlines()
    lines = []
    for number, text_line in enumerate(rows, start=1):
        if not text_line.strip():
            continue
        try:
            item = json.loads(text_line)
        except json.JSONDecodeError as error:
            last = number == len(rows) and not text.endswith("\n")
            if last or (text_line.startswith("{") and not text_line.rstrip().endswith("}")):
                warnings.warn(
                    f"{path}:{number}: torn {'last ' if last else ''}line {text_line[:80]!r} "
                    "skipped (a write cut short; the next append cuts a torn last line off)",
                    LedgerWarning,
                    stacklevel=2,
                )
                continue
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
    df = pd.DataFrame(lines, columns=[*FIELDS, "evaluation"])
    # retries of one evaluation (a commit that failed after its line) count once;
    # lines written before evaluations were recorded count one each
    df["evaluation"] = df["evaluation"].where(df["evaluation"].notna(), df.index.astype(str))
    table = (
        df.groupby("dataset", sort=True)
        .agg(
            **{
                "distinct run specs": ("spec_hash", "nunique"),
                "test evaluations": ("evaluation", "nunique"),
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
