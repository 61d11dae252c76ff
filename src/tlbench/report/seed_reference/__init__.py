"""The five seed lab reports as reference data.

The project grew out of five lab reports (Russian, in ``../shared/seeds``).
Each is transcribed here as ``seedNNN.yaml``: dataset, backbones, the report's
experiments mapped to tlbench strategy names, augmentation, hyperparameters,
every table with its numbers exactly as printed (columns and headings
translated to English, the original heading kept in ``heading_ru``), the
report's conclusions, and ``issues``: what looks wrong in the report (our
reading, see docs/seeds.md).

>>> load("000")["hyperparameters"]["batch_size"]
128
>>> tables(0)[-1].attrs["id"]
'overall'
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from tlbench.strategies.base import STRATEGIES

DATA_DIR = Path(__file__).resolve().parent
SEED_IDS: tuple[str, ...] = ("000", "001", "002", "003", "004")
# tlbench strategy names a seed experiment may map to (docs/seeds.md).
STRATEGY_NAMES: frozenset[str] = frozenset(STRATEGIES.names())
TABLE_KINDS: frozenset[str] = frozenset(
    {"results", "from_text", "data", "architecture", "reference", "example"}
)
REQUIRED_KEYS: tuple[str, ...] = (
    "id",
    "title",
    "source_file",
    "dataset",
    "backbones",
    "hyperparameters",
    "augmentation",
    "experiments",
    "tables",
    "conclusions",
    "issues",
)
REQUIRED_TABLE_KEYS: tuple[str, ...] = ("id", "kind", "title", "heading_ru", "columns", "rows")


class SeedReferenceError(ValueError):
    """A seed id that does not exist, or a seed file that breaks the format."""


def normalize_id(seed_id: int | str) -> str:
    """Return the canonical three-digit id of a seed (``0``, ``"0"``, ``"seed000"`` -> ``"000"``).

    Raises :class:`SeedReferenceError` listing the valid ids for anything else.
    """
    text = str(seed_id).strip()
    text = text.removeprefix("seed")
    if text.isdigit() and f"{int(text):03d}" in SEED_IDS:
        return f"{int(text):03d}"
    raise SeedReferenceError(f"unknown seed id {seed_id!r}; valid seed ids: {', '.join(SEED_IDS)}")


def path(seed_id: int | str) -> Path:
    """The YAML file of one seed."""
    return DATA_DIR / f"seed{normalize_id(seed_id)}.yaml"


@functools.cache
def _load_cached(canonical: str) -> dict[str, Any]:
    with open(DATA_DIR / f"seed{canonical}.yaml", encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    validate(data, where=f"seed{canonical}.yaml")
    return data


def load(seed_id: int | str) -> dict[str, Any]:
    """The transcription of one seed report as a dict (a fresh copy each call).

    Keys: ``id, title, source_file, framework, source_task, target_task,
    dataset, backbones, hyperparameters, augmentation, experiments, tables,
    conclusions, issues``. The file is validated (see :func:`validate`).
    """

    return copy.deepcopy(_load_cached(normalize_id(seed_id)))


def load_all() -> dict[str, dict[str, Any]]:
    """Every seed, keyed by its three-digit id."""
    return {seed: load(seed) for seed in SEED_IDS}


def tables(seed_id: int | str) -> list[pd.DataFrame]:
    """Every table of one seed as a DataFrame, in report order.

    Columns are the table's (English) column names; ``df.attrs`` carries the
    table's ``id``, ``kind``, ``title``, ``heading_ru`` and ``seed``.
    """
    data = load(seed_id)
    return [_frame(table, data["id"]) for table in data["tables"]]


def table(seed_id: int | str, table_id: str) -> pd.DataFrame:
    """One table of a seed by its ``id``; unknown ids are an error listing the valid ones."""
    data = load(seed_id)
    for entry in data["tables"]:
        if entry["id"] == table_id:
            return _frame(entry, data["id"])
    valid = ", ".join(t["id"] for t in data["tables"])
    raise SeedReferenceError(f"seed {data['id']} has no table {table_id!r}; its tables: {valid}")


def strategy_map(seed_id: int | str) -> list[tuple[str, str]]:
    """(report heading in English, tlbench strategy) for each experiment of a seed."""
    return [(e["heading"], e["strategy"]) for e in load(seed_id)["experiments"]]


def _frame(entry: dict[str, Any], seed: str) -> pd.DataFrame:
    frame = pd.DataFrame(entry["rows"], columns=entry["columns"])
    frame.attrs.update(
        {
            "seed": seed,
            "id": entry["id"],
            "kind": entry["kind"],
            "title": entry["title"],
            "heading_ru": entry["heading_ru"],
        }
    )
    return frame


def validate(data: Any, where: str = "seed") -> None:
    """Check one seed's parsed YAML; raise :class:`SeedReferenceError` listing every problem.

    Checks: required keys present, experiment strategies are tlbench strategy
    names, tables have the required keys, a known kind, unique ids, unique
    column names and rows as long as the column list.
    """
    if not isinstance(data, dict):
        raise SeedReferenceError(f"{where}: expected a mapping, got {type(data).__name__}")
    problems = [f"{where}: missing key {key!r}" for key in REQUIRED_KEYS if key not in data]
    for i, experiment in enumerate(data.get("experiments") or []):
        strategy = experiment.get("strategy")
        if strategy not in STRATEGY_NAMES:
            problems.append(
                f"{where}: experiments[{i}].strategy {strategy!r} is not a tlbench strategy; "
                f"valid: {', '.join(sorted(STRATEGY_NAMES))}"
            )
    seen: set[str] = set()
    for i, entry in enumerate(data.get("tables") or []):
        problems += _table_problems(entry, f"{where}: tables[{i}]", seen)
    if problems:
        raise SeedReferenceError("invalid seed reference:\n  " + "\n  ".join(problems))


def _table_problems(entry: Any, where: str, seen: set[str]) -> list[str]:
    """Problems of one table entry (``seen`` collects ids to find duplicates)."""
    if not isinstance(entry, dict):
        return [f"{where}: expected a mapping"]
    problems = [f"{where}: missing key {k!r}" for k in REQUIRED_TABLE_KEYS if k not in entry]
    if problems:
        return problems
    if entry["id"] in seen:
        problems.append(f"{where}: duplicate table id {entry['id']!r}")
    seen.add(entry["id"])
    if entry["kind"] not in TABLE_KINDS:
        problems.append(
            f"{where}: kind {entry['kind']!r} is not valid; valid: {', '.join(sorted(TABLE_KINDS))}"
        )
    columns = entry["columns"]
    if len(set(map(str, columns))) != len(columns):
        problems.append(f"{where} ({entry['id']}): repeated column names {columns}")
    if not entry["rows"]:
        problems.append(f"{where} ({entry['id']}): no rows")
    for j, row in enumerate(entry["rows"] or []):
        if not isinstance(row, list) or len(row) != len(columns):
            problems.append(
                f"{where} ({entry['id']}): row {j} has {len(row) if isinstance(row, list) else '?'} "
                f"cells, the table has {len(columns)} columns"
            )
    return problems
