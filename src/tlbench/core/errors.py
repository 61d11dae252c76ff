"""The package's errors and warnings (and the number hint of their messages), in one
module that imports nothing of the package.

Each is re-exported from the module that raises it (``tlbench.core.errors.SpecError``, ...),
so callers may import it from either place; a module that only needs the error
imports it from here, which keeps the import graph free of cycles.
"""

from __future__ import annotations

from typing import Any


class SpecError(ValueError):
    """An invalid run spec; the message names the key path and the bad value."""


class StudyConfigError(ValueError):
    """An invalid study config; the message names the offending key path."""


class TuningError(ValueError):
    """An invalid tuning section; the message names the key path and the bad value."""


class UnknownNameError(KeyError):
    """A name that is not registered on an axis; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights that are neither in the Keras cache nor downloadable."""


class InputShapeError(ValueError):
    """A saved model fed images of another shape than it takes (``takes``, ``given``)."""

    def __init__(self, message: str, takes: tuple[int, ...], given: tuple[int, ...]):
        super().__init__(message)
        self.takes = takes
        self.given = given


class ResumeWarning(UserWarning):
    """A checkpoint in the work folder was discarded (damaged, or of another spec or data)."""


class RunFailed(Exception):
    """Training diverged (non-finite loss); the message says where."""


class LedgerWarning(UserWarning):
    """The test-split ledger was repaired (a torn last line) or written without ``flock``."""


class RunLockedError(RuntimeError):
    """Another process (host, pid named) is writing the same run."""


class RunLockWarning(UserWarning):
    """A run's work folder cannot be locked here (no ``flock``): one writer is not enforced."""


def number_hint(value: Any) -> str:
    """A hint for a number YAML read as a string (``1e-3``: PyYAML wants ``1.0e-3``)."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return ""
        return (
            f" (YAML read {value!r} as a string: write exponents with a decimal point "
            "and a signed exponent, e.g. 1.0e-3 for 1e-3)"
        )
    return ""
