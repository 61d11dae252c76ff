"""A measured study's evidence: what its section of the results page is made of, small
enough to commit beside the section (``docs/results/<name>.evidence.zip``).

A section is written from the evidence alone (rule ``seed_results`` / ``study_results``
read it, and ``make results-pages`` rebuilds every section from the committed files
with no training), so a change to how a verdict is worded or computed needs no rerun,
and a reader can check each number against the predictions behind it.

One zip file (deflated; fixed member times, so the same evidence gives the same bytes):

* ``study.csv``: the study table (``tables/study.csv``: every metric and field the pages use);
* ``runs/NNNN/<array>.npy`` per row of the table that was evaluated: the labels it
  predicted on the final split (``y_pred``) beside the true ones (``y_true``), the
  positive class's probability for two classes (``p_pos``, the ROC AUC's input), the
  images' group ids (``groups``) where the data declares them, the same of the
  validation split (``val_*``) where the run recorded them, and ``split``;
* ``runs/NNNN/history.csv``: its per-epoch history (convergence checks);
* ``tables/<name>.csv``: tables computed from more than the runs' predictions
  (transferability scores of the backbones' features);
* ``looks.json``: the looks at each test split counted when the evidence was written
  (:func:`tlbench.analysis.lookcount.count_looks`: by every study on the machine, from its
  ledger); evidence written before that has ``looks.csv``, the study's own ledger's
  table, read as :func:`tlbench.analysis.lookcount.study_only_looks` gives it;
* ``meta.json``: the format and what the section was generated from (config files and
  ``--config`` values: the section's settings are read from them again on a rebuild).

:func:`read_evidence` unpacks it into a folder whose run folders hold a
``predictions.npz`` that :mod:`tlbench.analysis.runs` reads like a run's own.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlbench.analysis.lookcount import study_only_looks
from tlbench.core.atomic import atomic_file

#: The evidence file's format; a reader refuses any other.
FORMAT = 1
#: Suffix of an evidence file beside its section (``docs/results/seed002.evidence.zip``).
SUFFIX = ".evidence.zip"
#: Arrays kept from a run's ``predictions.npz`` as they are (the rest: y_pred, p_pos).
KEPT = ("y_true", "groups", "split", "val_y_true", "val_y_pred", "val_p_pos", "val_groups")
_EPOCH = (1980, 1, 1, 0, 0, 0)  # member times: the same evidence gives the same bytes


@dataclass
class Evidence:
    """A section's evidence, unpacked: the study table (``path`` pointing at the
    unpacked run folders), extra tables, the looks counted and the metadata."""

    study: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    looks: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def evidence_path(page: str | os.PathLike) -> Path:
    """The evidence file beside a section page (``docs/results/seed002.md`` ->
    ``docs/results/seed002.evidence.zip``)."""
    page = Path(page)
    return page.with_name(page.stem + SUFFIX)


def compact_predictions(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of a run's ``predictions.npz`` the evidence keeps: predicted labels
    (argmax of ``y_prob``) in place of the probabilities, the positive class's
    probability for two classes, and the labels in the smallest integer type."""
    with np.load(path) as data:
        arrays = {k: np.asarray(data[k]) for k in KEPT if k in data.files}
        prob = np.asarray(data["y_prob"]) if "y_prob" in data.files else None
        if prob is None and "y_pred" in data.files:
            arrays["y_pred"] = np.asarray(data["y_pred"])
        if "p_pos" in data.files:
            arrays["p_pos"] = np.asarray(data["p_pos"], np.float32)
    if prob is not None:
        arrays["y_pred"] = np.argmax(prob, axis=1)
        if prob.shape[1] == 2:
            arrays["p_pos"] = prob[:, 1].astype(np.float32)
    for key in ("y_true", "y_pred", "val_y_true", "val_y_pred", "groups", "val_groups"):
        if key in arrays and arrays[key].dtype.kind in "iu" and arrays[key].size:
            arrays[key] = arrays[key].astype(np.min_scalar_type(_span(arrays[key])))
    return arrays


def _span(values: np.ndarray) -> int:
    """A value whose smallest type holds every value of ``values`` (signed when negative)."""
    low, high = int(values.min()), int(values.max())
    return low if low < 0 and -low > high else (-high - 1 if low < 0 else high)


def _member(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data, compresslevel=9)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode()


def write_evidence(
    path: str | os.PathLike,
    study: pd.DataFrame,
    *,
    tables: Mapping[str, pd.DataFrame] | None = None,
    looks: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write the evidence of a study table's runs (atomically): each run folder's
    (``path``) predictions and history, where it has them (a failed run has none)."""
    path = Path(path)
    with atomic_file(path, "wb") as handle, zipfile.ZipFile(handle, "w") as archive:
        _member(archive, "meta.json", json.dumps({"format": FORMAT, **(meta or {})},
                                                 indent=1, sort_keys=True).encode())  # fmt: skip
        _member(archive, "study.csv", _csv(study))
        if looks is not None:
            _member(archive, "looks.json", json.dumps(looks, indent=1, sort_keys=True).encode())
        for name, table in sorted((tables or {}).items()):
            _member(archive, f"tables/{name}.csv", _csv(table))
        for index, run in enumerate(study["path"] if "path" in study else []):
            if not isinstance(run, str):
                continue
            folder = Path(run)
            if (folder / "predictions.npz").is_file():
                for key, array in sorted(compact_predictions(folder / "predictions.npz").items()):
                    _member(archive, f"runs/{index:04d}/{key}.npy", _npy(array))
            if (folder / "history.csv").is_file():
                _member(
                    archive, f"runs/{index:04d}/history.csv", (folder / "history.csv").read_bytes()
                )
    return path


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of an evidence file (``meta.json``), its format checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"evidence file not found: {path}")
    with zipfile.ZipFile(path) as archive:
        if "meta.json" not in archive.namelist():
            raise ValueError(f"{path} is not a tlbench evidence file: it has no meta.json")
        meta = json.loads(archive.read("meta.json"))
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"{path}: evidence format {meta.get('format')!r}, this code reads {FORMAT}"
        )
    return meta


def read_evidence(path: str | os.PathLike, into: str | os.PathLike) -> Evidence:
    """Unpack an evidence file into the folder ``into``: each evaluated run's folder
    (``into/runs/NNNN``, its ``predictions.npz`` and ``history.csv``; empty for a run
    that failed), with the study table's ``path`` pointing there. Errors name the file and what is wrong."""
    path, into = Path(path), Path(into)
    meta = read_meta(path)
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        if "study.csv" not in names:
            raise ValueError(f"{path} is not a tlbench evidence file: it has no study.csv")
        study = pd.read_csv(io.BytesIO(archive.read("study.csv")))
        looks = None
        if "looks.json" in names:
            looks = json.loads(archive.read("looks.json"))
        elif "looks.csv" in names:  # written before the machine's ledger: the study's own
            looks = study_only_looks(pd.read_csv(io.BytesIO(archive.read("looks.csv"))))
        tables = {
            Path(name).stem: pd.read_csv(io.BytesIO(archive.read(name)))
            for name in sorted(names)
            if name.startswith("tables/") and name.endswith(".csv")
        }
        runs: dict[int, dict[str, np.ndarray]] = {}
        for name in sorted(names):
            parts = name.split("/")
            if parts[0] != "runs" or len(parts) != 3:
                continue
            index, member = int(parts[1]), parts[2]
            folder = into / "runs" / parts[1]
            folder.mkdir(parents=True, exist_ok=True)
            if member.endswith(".npy"):
                runs.setdefault(index, {})[member[:-4]] = np.load(io.BytesIO(archive.read(name)))
            else:
                (folder / member).write_bytes(archive.read(name))
    if "path" in study:  # every run folder the table named, unpacked (maybe empty: failed)
        paths = []
        for index, run in enumerate(study["path"]):
            folder = into / "runs" / f"{index:04d}"
            if isinstance(run, str):
                folder.mkdir(parents=True, exist_ok=True)
            if index in runs:
                np.savez(folder / "predictions.npz", **runs[index])
            paths.append(str(folder) if isinstance(run, str) else np.nan)
        study["path"] = paths
    return Evidence(study=study, tables=tables, looks=looks, meta=meta)
