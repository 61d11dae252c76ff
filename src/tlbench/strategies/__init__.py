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
  frozen features, C chosen by cross-validation on train);
* :mod:`tlbench.strategies.lp_ft` — ``lp_ft`` (the probe's solution as the head, then
  fine-tuning);
* :mod:`tlbench.strategies.selective` — ``bitfit``, ``norm_only`` (chosen variables of the
  backbone train: biases; normalisation scale and shift);
* :mod:`tlbench.strategies.surgical` — ``surgical`` (one block trains, chosen on validation).
* :mod:`tlbench.strategies.l2_sp` — ``l2_sp`` (fine-tuning, penalty toward the
  pretrained weights); :mod:`tlbench.strategies.bss` — ``bss`` (fine-tuning, batch
  spectral shrinkage of the features); both train through
  :mod:`tlbench.strategies.penalised`.

A new strategy is a module here that registers its :class:`Strategy` subclass
(``@register``), imported below; the engine hands it a :class:`TrainContext` and
gets back a :class:`TrainResult` (docs/ARCHITECTURE.md "Strategies").
"""

# Each unit registers itself in STRATEGIES (tlbench.strategies.base) on import; importing
# any module of this package imports them all, so the registry is always complete.
from tlbench.strategies import (  # noqa: F401
    autoencoder,
    bss,
    direct,
    l2_sp,
    linear_probe,
    lora,
    lp_ft,
    phased,
    selective,
    surgical,
)
