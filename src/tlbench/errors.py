"""The package's errors and warnings, in one module that imports nothing of the package.

Each is re-exported from the module that raises it (``tlbench.spec.SpecError``, ...),
so callers may import it from either place; a module that only needs the error
imports it from here, which keeps the import graph free of cycles.
"""

from __future__ import annotations


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


class ResumeWarning(UserWarning):
    """A checkpoint in the work folder was discarded (damaged, or of another spec or data)."""
