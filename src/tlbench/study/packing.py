"""Which jobs of a study are cheap enough to share a SLURM job (docs/slurm.md, "Packed jobs").

A run that trains no backbone costs seconds — a head fitted on the cached
features of a frozen backbone (``feature_extraction``, ``linear_probe`` without
augmentation), or the source classifier mapped to the target classes without a
gradient step (``direct``) — and so does a transferability score of a feature
cache. On a cluster each such job would pay a scheduler round trip, an
interpreter start and a Keras import for seconds of work. The workflow puts
them into Snakemake job groups (:data:`CHEAP_RUNS`, :data:`CHEAP_SCORES`); the
SLURM profile's ``group-components`` packs that many of them into one SLURM job,
which runs them one after another, each with its own output, log and
``metrics.json``. Runs that train a backbone layer (fine-tuning, scratch, a
head-only phase followed by unfreezing, a frozen backbone under augmentation,
which runs the backbone on every epoch's images) stay one job each, as do the
feature caches (``backbone_features``: the backbone over every image, the one
job of a probe study that wants the GPU). On local execution Snakemake ignores
groups.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlbench.strategies.base import STRATEGIES

if TYPE_CHECKING:  # the Study is passed in; study.matrix is not imported at run time
    from tlbench.study.matrix import Study
    from tlbench.study.runs import Run

#: Snakemake group of the runs that train no backbone (rules/runs.smk).
CHEAP_RUNS = "cheap_runs"
#: Snakemake group of the transferability scores (rules/transferability.smk).
CHEAP_SCORES = "cheap_scores"


def trains_no_backbone(study: Study, run: Run) -> bool:
    """Whether ``run`` trains no backbone layer and runs the backbone once per image at
    most: its strategy takes no gradient step (``direct``), or it reads the (dataset,
    backbone) feature cache and every phase of its strategy trains the head alone
    (``feature_extraction``; ``linear_probe``, which declares no phase)."""
    spec = study.run_spec(run)
    strategy = STRATEGIES.get(spec["strategy"]["name"])(spec["strategy"]["params"])
    if not strategy.trains:
        return True
    if "features_cache" not in spec:
        return False
    return all(phase.head_only for phase in strategy.phases(spec))


def run_group(study: Study, run: Run) -> str | None:
    """The Snakemake group of a run's job: :data:`CHEAP_RUNS` or none (a job of its own)."""
    return CHEAP_RUNS if trains_no_backbone(study, run) else None
