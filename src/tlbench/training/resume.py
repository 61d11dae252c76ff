"""Checkpoint and resume of one run: epoch checkpoints in ``OUTDIR.work``.

:class:`Resume` keeps the work folder (progress.json, weights files, attempts.json),
:func:`data_fingerprint` the prepared data's content hash that a checkpoint is
tied to; :class:`ResumeCallback` and :class:`Heartbeat` are the Keras callbacks
through which a fit checkpoints finished epochs and keeps the attempt record current
(see :class:`tlbench.training.trainer.Trainer`).

An epoch is checkpointed when at least :func:`checkpoint_seconds` (default
:data:`tlbench.training.resume.CHECKPOINT_SECONDS`, environment variable ``TLBENCH_CHECKPOINT_SECONDS``) have
passed since the fit's last checkpoint or its start; every fit's end is. So a
killed run redoes at most that much training, and a short epoch (the quickstart's
take a third of a second on 2 cores, where saving the weights took a quarter of
the fit) is not followed by a save.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import socket
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tlbench.core.atomic import atomic_file, remove_stale
from tlbench.core.errors import ResumeWarning
from tlbench.core.hashing import sha256_file
from tlbench.core.provenance import utc_now
from tlbench.training.run_lock import clear_folder

if TYPE_CHECKING:  # annotations only: the parse-time check imports this module without Keras
    import keras

#: Seconds between two updates of the attempt record while a fit runs (a killed
#: attempt's time is counted up to its last update).
HEARTBEAT_SECONDS = 10.0
#: A checkpoint file's temporary: ``.<name>.tmp-<host>-<pid>-<random><suffix>``.
TEMPORARY = re.compile(r"^\.(.+?)\.tmp-")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Resume:
    """Per-epoch checkpoints of one run's fits in a work folder (``OUTDIR.work``).

    Fits (one per phase or autoencoder stage) are numbered in call order.
    ``progress.json`` holds the spec's hash and the prepared data's fingerprint
    (:func:`data_fingerprint`), the history rows so far, per finished fit its row
    count, best epoch and final weights file, and for the fit in progress its last
    two finished epochs (``current``, ``previous``): weights file, row count and
    early-stopping state. Every file is written under a hidden temporary name,
    flushed to disk (fsync), renamed into place, and its sha256 recorded in
    progress.json, which is replaced (the same way) after them.

    On resume a checkpoint of another spec or other data is discarded with a
    :class:`ResumeWarning`; so is one whose files are damaged (sha256 mismatch,
    missing, or failing to load): the run continues from the epoch before it,
    else from the start of that fit (a damaged finished fit: from its start).

    ``attempts.json`` lists the attempts (processes) of the run: start, last
    update, wall ``seconds``, ``setup_seconds``, ``train_seconds`` and
    ``slurm_job_id``; the current attempt's record is updated at every epoch end
    and every :data:`HEARTBEAT_SECONDS` of a fit, so a killed attempt's cost
    counts up to its last update. :meth:`finish_attempt` returns them all.
    """

    def __init__(
        self, workdir: str | os.PathLike, spec: Mapping[str, Any], data_key: str | None = None
    ):

        self.dir = Path(workdir)
        blob = json.dumps(spec, sort_keys=True, default=str).encode()
        self.key = hashlib.sha256(blob).hexdigest()
        self.data_key = data_key
        self.resumed = False
        self.next_fit = 0
        self.setup_start: float | None = None
        self.train_start: float | None = None
        self._wall_start = time.perf_counter()
        self._last_beat = 0.0
        self.checkpoint_seconds = checkpoint_seconds()
        self._last_checkpoint = time.perf_counter()
        self.attempt: dict[str, Any] = {
            "started_utc": utc_now(),
            "finished_utc": None,
            "seconds": 0.0,
            "setup_seconds": 0.0,
            "train_seconds": 0.0,
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        }
        self.previous_attempts: list[dict[str, Any]] = []
        self.state = {
            "spec": self.key,
            "data": data_key,
            "rows": [],
            "fits": [],
            "current": None,
            "previous": None,
        }
        if self.dir.is_dir():
            self._open()

    def _discard(self, why: str) -> None:
        warnings.warn(f"{self.dir}: {why}", ResumeWarning, stacklevel=3)

    def _open(self) -> None:
        """Read the work folder left by earlier attempts (see the class docstring)."""
        for path in self.dir.iterdir():  # temporaries of a killed write (not a live one's)
            stale = TEMPORARY.match(path.name)
            if stale:
                remove_stale(self.dir / stale.group(1))
        keys = {"spec": self.key, "data": self.data_key}
        state, same_run = None, True
        progress = self.dir / "progress.json"
        if progress.exists():
            try:
                state = json.loads(progress.read_text())
                if not isinstance(state, dict) or not {"rows", "fits", "current"} <= set(state):
                    raise ValueError("not a checkpoint record")
            except ValueError as error:
                self._discard(f"progress.json is damaged ({error}); the run starts over")
                state = None
        if state is not None and state.get("spec") != self.key:
            self._discard("the checkpoint is of another run spec; discarded, the run starts over")
            state, same_run = None, False
        elif state is not None and state.get("data") != self.data_key:
            self._discard(
                "the checkpoint was trained on other data (the prepared dataset changed "
                "since: its fingerprint differs); discarded, the run starts over"
            )
            state, same_run = None, False
        try:
            saved = json.loads((self.dir / "attempts.json").read_text())
        except (FileNotFoundError, ValueError):
            saved = None
        if same_run and isinstance(saved, dict) and saved.get("keys") == keys:
            self.previous_attempts = list(saved["attempts"])
        if state is None:
            clear_folder(self.dir, keep_hidden=True)  # its lock and live temporaries stay
            return
        state.setdefault("previous", None)
        self.state = state

    # ---------------------------------------------------------------- attempts

    def heartbeat(self, force: bool = False) -> None:
        """Update this attempt's record (every HEARTBEAT_SECONDS unless ``force``)."""

        now = time.perf_counter()
        if not force and now - self._last_beat < HEARTBEAT_SECONDS:
            return
        self._last_beat = now
        self.attempt["finished_utc"] = utc_now()
        self.attempt["seconds"] = round(now - self._wall_start, 3)
        for key, start in (
            ("setup_seconds", self.setup_start),
            ("train_seconds", self.train_start),
        ):
            if start is not None:
                self.attempt[key] = round(now - start, 3)
        self._write_attempts()

    def _write_attempts(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        keys = {"spec": self.key, "data": self.data_key}
        _durable_json(
            self.dir / "attempts.json",
            {"keys": keys, "attempts": [*self.previous_attempts, self.attempt]},
        )

    def finish_attempt(self, setup_seconds: float, train_seconds: float) -> list[dict[str, Any]]:
        """Close this attempt with its measured times; every attempt of the run."""

        self.attempt.update(
            finished_utc=utc_now(),
            seconds=round(time.perf_counter() - self._wall_start, 3),
            setup_seconds=round(setup_seconds, 3),
            train_seconds=round(train_seconds, 3),
        )
        return [*self.previous_attempts, self.attempt]

    # ---------------------------------------------------------------- checkpoints

    def _intact(self, entry: Mapping[str, Any]) -> str | None:
        """None when every file of ``entry`` is there with its recorded sha256; else why not."""
        for name, digest in (entry.get("sha256") or {}).items():
            path = self.dir / name
            if not path.is_file():
                return f"{name} is missing"
            if sha256_file(path) != digest:
                return f"{name} is damaged (its sha256 differs from the one recorded)"
        if not entry.get("sha256"):
            return "no checksums recorded"
        return None

    def _load(self, model: keras.Model, entry: Mapping[str, Any], what: str) -> bool:
        """Load ``entry``'s weights into a compiled ``model``; False (warned) when damaged."""
        problem = self._intact(entry)
        if problem is None:
            if model.optimizer is not None and not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
            variables = list(model.weights)
            if model.optimizer is not None:
                variables += list(model.optimizer.variables)
            snapshot = [np.array(v.numpy()) for v in variables]
            try:
                model.load_weights(self.dir / entry["weights"])
            except Exception as error:  # a file that verifies but does not load
                for variable, value in zip(variables, snapshot, strict=True):
                    variable.assign(value)
                problem = f"{entry['weights']} does not load ({type(error).__name__}: {error})"
        if problem is not None:
            self._discard(f"checkpoint of {what}: {problem}; discarded")
            return False
        self.resumed = True
        return True

    def restore_finished(self, fit: int, model: keras.Model, trainer: Any) -> bool:
        """Restore a fit that had finished; False when it had not (or was damaged)."""
        if fit >= len(self.state["fits"]):
            return False
        done = self.state["fits"][fit]
        if not self._load(model, done, f"finished fit {fit}"):
            # this fit and everything after it are redone from the fit's start
            rows = self.state["fits"][fit - 1]["rows"] if fit else 0
            self.state = {
                **self.state,
                "rows": self.state["rows"][:rows],
                "fits": self.state["fits"][:fit],
                "current": None,
                "previous": None,
            }
            return False
        trainer.rows[:] = self.state["rows"][: done["rows"]]
        trainer.best_epoch = done["best_epoch"]
        return True

    def restore_current(self, fit: int, model: keras.Model, trainer: Any) -> dict | None:
        """Weights and rows of fit ``fit`` at its last good finished epoch (None: nothing)."""
        for which in ("current", "previous"):
            entry = self.state.get(which)
            if not entry or entry["fit"] != fit:
                continue
            if self._load(model, entry, f"fit {fit} after epoch {entry['epoch']}"):
                trainer.rows[:] = self.state["rows"][: entry["rows"]]
                self.state = {**self.state, "current": entry, "previous": None}
                return entry
        self.state = {**self.state, "current": None, "previous": None}
        return None

    def _save(self, name: str, write: Any) -> str:
        """Write file ``name`` through ``write(path)`` durably; its sha256."""
        self.dir.mkdir(parents=True, exist_ok=True)
        # a temporary of this process (host, pid: remove_stale keeps a live writer's);
        # it ends as ``name`` does, as Keras's save_weights and np.savez require
        suffix = ".weights.h5" if name.endswith(".weights.h5") else Path(name).suffix
        fd, tmp = tempfile.mkstemp(
            prefix=f".{name}.tmp-{socket.gethostname()}-{os.getpid()}-", suffix=suffix, dir=self.dir
        )
        os.close(fd)
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, self.dir / name)
        _fsync_dir(self.dir)
        return sha256_file(self.dir / name)

    def start_fit(self) -> None:
        """A fit (or its resumed rest) starts: the time to its first checkpoint starts."""
        self._last_checkpoint = time.perf_counter()

    def checkpoint_due(self) -> bool:
        """Whether :attr:`checkpoint_seconds` have passed since the fit's last checkpoint
        (or its start)."""
        return time.perf_counter() - self._last_checkpoint >= self.checkpoint_seconds

    def save_epoch(self, fit: int, epoch: int, model: keras.Model, rows: list, stopper: Any):
        """Checkpoint fit ``fit`` after its (0-based) ``epoch``."""
        name = f"fit{fit}-epoch{epoch + 1}.weights.h5"
        sums = {name: self._save(name, model.save_weights)}
        current = {
            "fit": fit,
            "epoch": epoch + 1,
            "rows": len(rows),
            "weights": name,
            "stopper": None,
        }
        if stopper is not None:
            best_name = None
            if stopper.best_weights is not None:
                best_name = f"fit{fit}-epoch{epoch + 1}-best.npz"
                sums[best_name] = self._save(
                    best_name, lambda path: np.savez(path, *stopper.best_weights)
                )
            current["stopper"] = {
                "wait": stopper.wait,
                "best": float(stopper.best) if math.isfinite(float(stopper.best)) else None,
                "best_epoch": stopper.best_epoch,
                "best_weights": best_name,
            }
        current["sha256"] = sums
        previous = self.state.get("current")
        if not previous or previous["fit"] != fit:
            previous = None
        self._write({**self.state, "rows": list(rows), "current": current, "previous": previous})
        self.heartbeat(force=True)
        self._last_checkpoint = time.perf_counter()

    def restore_stopper(self, current: dict, stopper: Any) -> None:
        """Early-stopping state of the fit in progress (after its on_train_begin)."""
        saved = current.get("stopper")
        if stopper is None or not saved:
            return
        stopper.wait = saved["wait"]
        if saved["best"] is not None:  # None: no monitored value seen yet
            stopper.best = saved["best"]
        stopper.best_epoch = saved["best_epoch"]
        if saved["best_weights"]:
            with np.load(self.dir / saved["best_weights"]) as z:
                stopper.best_weights = [z[f"arr_{i}"] for i in range(len(z.files))]

    def finish_fit(self, fit: int, model: keras.Model, rows: list, best_epoch: int | None):
        """Record a finished fit (its final weights, e.g. the restored best epoch)."""
        name = f"fit{fit}-final.weights.h5"
        done = {
            "rows": len(rows),
            "best_epoch": best_epoch,
            "weights": name,
            "sha256": {name: self._save(name, model.save_weights)},
        }
        fits = [*self.state["fits"], done]
        self._write(
            {**self.state, "rows": list(rows), "fits": fits, "current": None, "previous": None}
        )
        self.heartbeat(force=True)

    def _write(self, state: dict) -> None:
        """Replace progress.json, then drop weights files it no longer names."""
        state = {**state, "spec": self.key, "data": self.data_key}
        _durable_json(self.dir / "progress.json", state)
        self.state = state
        keep = {f["weights"] for f in state["fits"]} | {"progress.json", "attempts.json"}
        for entry in (state["current"], state.get("previous")):
            if entry:
                keep.update(entry.get("sha256") or {})
        for path in self.dir.iterdir():
            if path.name not in keep and not path.name.startswith("."):
                path.unlink()


def _durable_json(path: Path, data: Any) -> None:
    """Write JSON atomically and flushed to disk (file and folder fsync)."""
    with atomic_file(path) as handle:
        json.dump(data, handle, indent=1, default=str)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    _fsync_dir(path.parent)


#: Seconds of training between two epoch checkpoints of a fit, by default: a killed
#: run redoes at most this much (besides the epoch it was killed in).
CHECKPOINT_SECONDS = 60.0
#: The environment variable that sets it (0: checkpoint every epoch).
CHECKPOINT_ENV = "TLBENCH_CHECKPOINT_SECONDS"


def checkpoint_seconds() -> float:
    """Seconds between epoch checkpoints: :data:`CHECKPOINT_ENV` if set, else
    :data:`CHECKPOINT_SECONDS`; a value that is not a number >= 0 is an error naming it."""
    value = os.environ.get(CHECKPOINT_ENV)
    if value is None:
        return CHECKPOINT_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise ValueError(
            f"{CHECKPOINT_ENV}={value!r}: not a number of seconds >= 0 "
            "(seconds of training between two epoch checkpoints; 0: every epoch)"
        )
    return seconds
