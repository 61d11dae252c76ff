"""Derived seeds: one 31-bit seed from a run's seed and parts (an epoch, a stage), the same
in every process (numpy's SeedSequence).
"""

from __future__ import annotations

import numpy as np


def derived_seed(seed: int, *parts: int) -> int:
    """A 31-bit seed drawn from ``(seed, *parts)`` (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([int(seed), *map(int, parts)]).generate_state(1)[0] >> 1)
