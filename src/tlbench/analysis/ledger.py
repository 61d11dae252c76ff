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
themselves, at the size they were prepared at), the fingerprint of the test images
whatever their size (``test_images``, from the manifest:
:func:`tlbench.datasets.duplicates.images_fingerprint`), the hash of the run spec (:func:`spec_hash`), the evaluation it records
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

Appending is safe from concurrent jobs, on one machine and on shared folders that
honour ``flock``; a torn last line is cut off by the next append and skipped by
:func:`read` (:mod:`tlbench.core.jsonl_log`). Counting the looks is
:mod:`tlbench.analysis.lookcount`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tlbench
from tlbench.core.jsonl_log import append_lines, read_lines
from tlbench.core.provenance import git_state, utc_now
from tlbench.datasets.fingerprint import split_fingerprint

if TYPE_CHECKING:
    pass

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
        "test_images": test_images(prepared),
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


def append(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Append ``record`` as one line (:func:`tlbench.core.jsonl_log.append_lines`)."""
    append_lines(path, lambda _: [record])


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
        content = {
            k: v for k, v in line.items() if k not in ("ledger", "test_fingerprint", "test_images")
        }
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
        name: (prepared_fingerprint(folder), test_fingerprint(folder))
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

    return len(append_lines(machine or machine_ledger_path(), missing))


def read(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The ledger's lines; a ledger that does not exist has none (no test look yet).
    A torn last line (no newline, not JSON) is skipped with a warning
    (:func:`tlbench.core.jsonl_log.read_lines`); any other line that is not a ledger
    line is an error naming it."""
    lines = []
    for number, item in read_lines(path):
        missing = [f for f in FIELDS if f not in item]
        if missing:
            raise ValueError(f"{path}:{number}: ledger line lacks {', '.join(missing)}")
        lines.append(item)
    return lines


def test_images(folder: str | os.PathLike) -> str | None:
    """The fingerprint of a prepared folder's test images whatever size they were
    prepared at (its manifest's ``test_images``), or None for a folder prepared before
    the manifest recorded it."""
    manifest = Path(folder) / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"{folder} is not a prepared dataset (no manifest.json)")
    return json.loads(manifest.read_text()).get("test_images")


def test_fingerprint(folder: str | os.PathLike) -> str | None:
    """The test split's fingerprint of a prepared folder (hashed, never scored), or None
    where the folder holds no test split (copied without it, sealed); a folder that is
    not a prepared dataset is an error."""
    folder = Path(folder)
    if not (folder / "manifest.json").is_file():
        raise FileNotFoundError(f"{folder} is not a prepared dataset (no manifest.json)")
    if not any((folder / f"test_{part}.npy").exists() for part in ("x", "y")):
        return None
    return split_fingerprint(folder, "test")
