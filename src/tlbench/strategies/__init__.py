"""Transfer strategies, one unit each, registered in :data:`STRATEGIES`.

* :mod:`tlbench.strategies.base` — the interface (:class:`Strategy`,
  :class:`Phase`, :class:`TrainContext`, :class:`TrainResult`), the registry and
  the layer helpers;
* :mod:`tlbench.strategies.phased` — the phase-declared strategies (``scratch``,
  ``feature_extraction``, ``fine_tune``, ``two_phase``, ``freeze_bottom``,
  ``discriminative_lr``), trained by the default :meth:`Strategy.train`;
* :mod:`tlbench.strategies.direct` — ``direct`` (class mapping, no training);
* :mod:`tlbench.strategies.autoencoder` — ``autoencoder`` (greedy stages, then phases);
* :mod:`tlbench.strategies.linear_probe` — ``linear_probe`` (logistic regression on
  frozen features, C chosen on validation).

A new strategy is a module here that registers its :class:`Strategy` subclass
(``@register``), imported below; the engine hands it a :class:`TrainContext` and
gets back a :class:`TrainResult` (docs/ARCHITECTURE.md "Strategies").
"""

from tlbench.errors import SpecError
from tlbench.strategies.autoencoder import Autoencoder
from tlbench.strategies.base import (
    BATCHNORM_POLICIES,
    REQUIRED,
    STRATEGIES,
    Phase,
    Strategy,
    TrainContext,
    TrainResult,
    backbone_layers,
    block_names,
    freeze_batchnorm,
    is_batchnorm,
    layer_multipliers,
    nested_layers,
    register,
    set_trainable,
)
from tlbench.strategies.direct import Direct
from tlbench.strategies.linear_probe import LinearProbe
from tlbench.strategies.phased import (
    DiscriminativeLR,
    FeatureExtraction,
    FineTune,
    FreezeBottom,
    Scratch,
    TwoPhase,
)

__all__ = [
    "BATCHNORM_POLICIES",
    "REQUIRED",
    "STRATEGIES",
    "Autoencoder",
    "Direct",
    "DiscriminativeLR",
    "FeatureExtraction",
    "FineTune",
    "FreezeBottom",
    "LinearProbe",
    "Phase",
    "Scratch",
    "SpecError",
    "Strategy",
    "TrainContext",
    "TrainResult",
    "TwoPhase",
    "backbone_layers",
    "block_names",
    "freeze_batchnorm",
    "is_batchnorm",
    "layer_multipliers",
    "nested_layers",
    "register",
    "set_trainable",
]
