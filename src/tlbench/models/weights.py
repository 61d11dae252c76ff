"""The random-init weights kind ``{random: SEED}``, without importing Keras.

A backbone's ``weights`` is ``imagenet``, ``none`` (random initialisation drawn from
the run's seed), a weights file, ``{run: <run folder>}`` (the run spec's form of the
study config's ``{pretrain: {...}}``) or ``{random: SEED}``: random initialisation
drawn from ``SEED`` alone (:func:`tlbench.models.backbones.applications.build_backbone`), whatever the
run's seed. Such a backbone is not pretrained (``pretrained: false``; a negative
control among the feature extractors), but its weights have an identity, so its
features are cached (:mod:`tlbench.training.feature_cache`) and scored
(:mod:`tlbench.analysis.transferability`) like those of a pretrained one.

The spec (:mod:`tlbench.training.spec`), the study config (:mod:`tlbench.study.config`) and the
backbone builder check ``SEED`` with :func:`check_random_seed`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tlbench.core.errors import SpecError

#: The key of the random-init weights mapping.
RANDOM = "random"
#: Seeds are what ``keras.utils.set_random_seed`` accepts on every backend
#: (NumPy's ``np.random.seed`` takes 0 <= seed < 2**32).
MAX_SEED = 2**32 - 1


def check_random_seed(value: Any, where: str) -> int:
    """``value`` as the SEED of ``{random: SEED}``: an integer in 0 .. 2**32 - 1
    (booleans and floats are not); else a :class:`SpecError` naming ``where`` and it."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise SpecError(
            f"{where}: {value!r} is not a valid random-init seed; it must be an integer "
            f"from 0 to {MAX_SEED} ({{random: SEED}})"
        )
    return int(value)


def random_seed(weights: Any) -> int | None:
    """The SEED of ``{random: SEED}`` weights; None for every other kind."""
    if isinstance(weights, Mapping) and RANDOM in weights:
        return weights[RANDOM]
    return None


def random_label(seed: int) -> str:
    """The short label of ``{random: SEED}`` weights in tables: ``random(seed 0)``."""
    return f"random(seed {seed})"
