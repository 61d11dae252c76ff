"""The test-split ledgers: one line per look at a dataset's test split.

Every run that evaluates the test split (every run that is not a pilot run)
appends one JSON line to its study's ledger, ``<results>/test_evaluations.jsonl``
(:data:`NAME`), and the same line to the machine's ledger
(:func:`machine_ledger_path`: ``test_evaluations.jsonl`` in the user's data folder for
tlbench, ``platformdirs.user_data_dir("tlbench")``, or ``$TLBENCH_DATA_DIR``), which
every study and every ``tlbench run`` on this machine shares. A line holds the dataset,
the fingerprint of its prepared data (:func:`prepared_fingerprint`: the manifest, no
timing field), the fingerprint of its test split (``test_fingerprint``:
:func:`tlbench.datasets.fingerprint.split_fingerprint`, the images and labels
themselves), the hash of the run spec (:func:`spec_hash`), the evaluation it records
(:func:`evaluation_id`), the UTC time and the code version; the machine's line also
names the study ledger it was written beside (``ledger``). The files live beside, not
inside, the run folders, so deleting or rerunning a run does not remove the record of
its earlier look. :func:`looks` counts, per dataset, how many distinct run specs have
been evaluated on the study's test split by any study on this machine: final numbers
that follow many looks are chosen on test however carefully each look was made. Lines
a study ledger got before the machine's ledger existed are folded into it (:func:`fold`,
once each, by their evaluation) when the study's looks are counted.

The engine writes the lines *before* it commits the run folder
(:func:`tlbench.training.engine.run`'s ``before_commit``): a write that fails
fails the run with no run folder (a retry resumes from its checkpoints), never a
finished run that Snakemake then deletes. A commit that fails after the line
was written leaves a line whose retry writes a second one of the same
evaluation (the same run spec and first attempt): counted once.

Appending is safe from concurrent jobs on one machine and on NFS-like shared
folders that honour ``flock``: each append is one ``os.write`` of whole lines to a
file opened with ``O_APPEND``, under an exclusive lock. Where ``flock`` is not
supported (``ENOLCK``, ``EOPNOTSUPP``: Lustre mounted without it) the lines are
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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tlbench
from tlbench.core.errors import LedgerWarning
from tlbench.core.provenance import git_state, utc_now
from tlbench.datasets.fingerprint import split_fingerprint

if TYPE_CHECKING:
    import pandas as pd

#: File name of the ledger in a study's results folder (and in the machine's data folder).
NAME = "test_evaluations.jsonl"
FIELDS = ("dataset", "prepared_fingerprint", "spec_hash", "time_utc", "code")
#: The environment variable that moves the machine's ledger (tests, CI: a tmp folder).
DATA_DIR_ENV = "TLBENCH_DATA_DIR"


def ledger_path(results: str | os.PathLike) -> Path:
    """The ledger of a study's results folder."""
    return Path(results) / NAME


def machine_ledger_path() -> Path:
    """The machine's ledger: ``$TLBENCH_DATA_DIR/test_evaluations.jsonl``, or in the
    user's data folder for tlbench (``platformdirs.user_data_dir("tlbench")``)."""
    folder = os.environ.get(DATA_DIR_ENV)
    if folder is not None and not folder.strip():
        raise ValueError(f"{DATA_DIR_ENV} is set but empty: unset it or name a folder")
    if folder is None:
        import platformdirs  # deferred: only where a line is written or counted

        folder = platformdirs.user_data_dir("tlbench")
    return Path(folder).expanduser() / NAME


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
    prepared = spec["dataset"]["prepared"]
    return {
        "dataset": spec["dataset"]["name"],
        "prepared": str(prepared),
        "prepared_fingerprint": prepared_fingerprint(prepared),
        "test_fingerprint": split_fingerprint(prepared, "test"),
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
    _append(path, lambda _: [record])


def _append(
    path: str | os.PathLike,
    records: Callable[[Path], list[Mapping[str, Any]]],
) -> list[Mapping[str, Any]]:
    """Append the lines ``records(path)`` gives, called once the file is locked (it may
    read the file to leave out what is there already), in one write. Returns them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        locked = _lock(fd, path)
        if locked:
            _cut_torn_tail(fd, path)
        chosen = records(path)
        lines = [(json.dumps(dict(r), sort_keys=True, default=str) + "\n").encode() for r in chosen]
        if any(line.count(b"\n") != 1 for line in lines):
            raise ValueError("a ledger record must serialise to one line")
        if not lines:
            return []
        data = b"".join(lines)
        if not locked and _torn(fd):  # unlocked, a torn tail may be a write in progress:
            data = b"\n" + data  # not cut, ended instead (read() skips it, with a warning)
        size = os.fstat(fd).st_size
        written = os.write(fd, data)
        if written != len(data):
            if locked:  # no torn line left behind (unlocked, another line may follow it)
                os.ftruncate(fd, size)
            raise OSError(f"{path}: wrote {written} of {len(data)} bytes of ledger lines")
        os.fsync(fd)
        return chosen
    finally:
        os.close(fd)  # also releases the lock


def record(
    path: str | os.PathLike, metrics: Mapping[str, Any], machine: str | os.PathLike | None = None
) -> dict[str, Any] | None:
    """Append the ledger line of a finished run's ``metrics`` when it evaluated the
    test split, to the study's ledger ``path`` and to the machine's (``machine``, by
    default :func:`machine_ledger_path`); a pilot run (or a failed run, never evaluated)
    appends nothing and opens no test file. Returns the study's line, or None."""
    if metrics.get("pilot") or not metrics.get("test"):
        return None
    attempts = metrics.get("attempts") or [{}]
    evaluation = evaluation_id(metrics["spec"], attempts[0].get("started_utc"))
    line = entry(metrics["spec"], metrics.get("finished_utc"), evaluation)
    append(path, line)
    append(machine or machine_ledger_path(), {**line, "ledger": str(Path(path).resolve())})
    return line


def evaluation_keys(lines: list[Mapping[str, Any]], source: str | None = None) -> list[str]:
    """What each evaluation of ``lines`` is known by in both ledgers: its ``evaluation``
    id, or for a line written before evaluations were recorded its study ledger
    (``source``, or the machine line's ``ledger``), a hash of the line (without what the
    machine's copy adds) and how many identical lines came before it there: each such
    line is one evaluation, as it was counted in its study."""
    keys, seen = [], {}
    for line in lines:
        if line.get("evaluation"):
            keys.append(str(line["evaluation"]))
            continue
        content = {k: v for k, v in line.items() if k not in ("ledger", "test_fingerprint")}
        blob = json.dumps([source or line.get("ledger"), content], sort_keys=True, default=str)
        base = hashlib.sha256(blob.encode()).hexdigest()[:16]
        seen[base] = seen.get(base, -1) + 1
        keys.append(f"line:{base}:{seen[base]}")
    return keys


def fold(
    path: str | os.PathLike,
    prepared: Mapping[str, str | os.PathLike],
    machine: str | os.PathLike | None = None,
) -> int:
    """Copy the study ledger ``path``'s lines that the machine's ledger lacks (by
    :func:`evaluation_keys`) into it, so that looks recorded before it existed are
    counted: idempotent, under the machine ledger's lock. A line without a
    ``test_fingerprint`` (written before it was recorded) gets that of ``prepared[its
    dataset]`` when that folder still holds the data it was evaluated on (the same
    :func:`prepared_fingerprint`); otherwise none (it is counted for its study only).
    Returns how many lines were added."""
    lines = read(path)
    if not lines:
        return 0
    source = str(Path(path).resolve())
    current = {
        name: (prepared_fingerprint(folder), _test_fingerprint(folder))
        for name, folder in prepared.items()
        if any(line["dataset"] == name and not line.get("test_fingerprint") for line in lines)
    }

    def missing(machine_path: Path) -> list[dict[str, Any]]:
        known = set(evaluation_keys(read(machine_path)))
        added = []
        for line, key in zip(lines, evaluation_keys(lines, source), strict=True):
            if key in known:
                continue
            known.add(key)
            fingerprint = line.get("test_fingerprint")
            if not fingerprint and line["dataset"] in current:
                manifest, test = current[line["dataset"]]
                fingerprint = test if line["prepared_fingerprint"] == manifest else None
            added.append({**line, "test_fingerprint": fingerprint, "ledger": source})
        return added

    return len(_append(machine or machine_ledger_path(), missing))


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


def _test_fingerprint(folder: str | os.PathLike) -> str | None:
    """The test split's fingerprint of a prepared folder (hashed, never scored), or None
    where the folder holds no test split (copied without it, sealed); a folder that is
    not a prepared dataset is an error."""
    folder = Path(folder)
    if not (folder / "manifest.json").is_file():
        raise FileNotFoundError(f"{folder} is not a prepared dataset (no manifest.json)")
    if not any((folder / f"test_{part}.npy").exists() for part in ("x", "y")):
        return None
    return split_fingerprint(folder, "test")


def _shown(path: str | os.PathLike) -> str:
    """A path as a page shows it: relative to the working folder when inside it, the
    home folder as ``~``."""
    path = Path(path).resolve()
    for base, prefix in ((Path.cwd(), ""), (Path.home(), "~/")):
        if path.is_relative_to(base):
            return prefix + path.relative_to(base).as_posix()
    return str(path)


def looks(
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
    prepared folder holds, with every line of the study's own ledger for that dataset
    (an earlier preparation too). Evaluations are counted once (:func:`evaluation_keys`).

    Returns (JSON-serialisable)::

        {"machine_ledger": "~/.local/share/tlbench/test_evaluations.jsonl",
         "study_ledger": "results/x/test_evaluations.jsonl",
         "datasets": [{"dataset": "gtsrb", "test_fingerprint": "<sha256>",
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
        fingerprint = _test_fingerprint(folder)
        mine = {
            key: {**x, "ledger": own}
            for key, x in zip(study_keys, study_lines, strict=True)
            if x["dataset"] == name
        }
        found = {
            key: {**x, "ledger": _shown(x["ledger"]) if x.get("ledger") else None}
            for key, x in zip(machine_keys, machine_lines, strict=True)
            if fingerprint is not None and x.get("test_fingerprint") == fingerprint
        }
        lines = {**found, **mine}
        times = sorted(str(x["time_utc"]) for x in lines.values())
        datasets.append(
            {
                "dataset": name,
                "test_fingerprint": fingerprint,
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
