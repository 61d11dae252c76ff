"""One adapter per version of the verdict code, for benchmarks/bench_verdict_calibration.py.

An adapter takes a simulated study (:class:`verdict_sim.Study`: per cell a ``(seeds,
images)`` bool array of which test images each run classified right, the images' groups)
and returns what that version of ``tlbench.analysis.verdict`` says about it, in one shape:

* ``accuracy``: per cell the 95 % interval ``[low, high]`` of its test accuracy;
* ``difference``: per cell 1.. the 95 % interval of ``cell - cell 0`` on its own;
* ``band``: the intervals the outcomes are read from (a version that allows for the
  number of comparisons widens them into a simultaneous band);
* ``outcome``: per cell 1.. against cell 0, one of ``better``, ``worse``, ``equivalent``,
  ``inconclusive``; ``said``: the word the version itself printed.

``tlbench`` is imported inside each adapter: the worker process of each version runs with
that version's ``src`` on ``PYTHONPATH``, so the import must wait until the adapter runs.
:data:`SUBSETS` is how each version's pipeline draws label-budget subsets (the simulator
draws a study's runs accordingly).
"""

from __future__ import annotations

from typing import Any

OUTCOMES = ("better", "worse", "equivalent", "inconclusive")

#: How each version's pipeline draws a label budget's images: af49858 from the dataset's
#: split seed (pipeline.py:60-64, budget.py:126: one subset for every seed), after issue
#: 34 from the run's seed (its deliverable 3; the script's ``--after-subsets`` says
#: otherwise while that is not done).
SUBSETS = {"before": "dataset", "after": "seed"}

#: The commit the "before" column is (the code before issue 34).
BEFORE_COMMIT = "af49858"


def before(study: Any, reps: int, seed: int, level: float = 0.95) -> dict[str, list]:
    """af49858: ``bootstrap`` (images resampled as independent, seeds per cell), ``interval``
    (percentile, widened by t/z), ``compare`` -> better / worse / tied. Its "tied" meant
    two things, told apart by ``compare``'s second value ``equivalent`` (the interval
    lies inside the margin, printed "equivalent within the margin"): tied and equivalent
    maps to ``equivalent``, any other tie to ``inconclusive``."""
    # deferred: the tlbench imported is the worker's PYTHONPATH's (the version measured)
    from tlbench.analysis.verdict import bootstrap as verdict

    replicates = verdict.bootstrap(study.correct, reps, seed)
    cells = len(study.correct)
    accuracy = [list(verdict.interval(replicates, c, level=level)) for c in range(cells)]
    difference, outcome, said = [], [], []
    for c in range(1, cells):
        low, high = verdict.interval(replicates, c, 0, level)
        word, equivalent = verdict.compare(low, high, study.scenario.margin)
        difference.append([low, high])
        said.append(word)
        outcome.append(word if word != "tied" else "equivalent" if equivalent else "inconclusive")
    return {
        "accuracy": accuracy,
        "difference": difference,
        "band": difference,  # no allowance for the number of comparisons
        "outcome": outcome,
        "said": said,
    }


def after(study: Any, reps: int, seed: int, level: float = 0.95) -> dict[str, list]:
    """After issue 34: ``intervals.compare_cells`` on the plain arrays, told the images'
    groups (when the scenario has groups) and that every cell is stochastic. Its
    outcomes read the simultaneous band over the family of comparisons with cell 0
    (``low``, ``high``: ``band`` here); ``marginal_low``, ``marginal_high``, each
    difference's 95 % interval on its own, are ``difference``. The accuracies'
    intervals: ``intervals.intervals`` of each cell alone, on the same bootstrap (the
    same generator seed)."""
    # deferred: the tlbench imported is the worker's PYTHONPATH's (the version measured)
    from tlbench.analysis.verdict import bootstrap as replicate
    from tlbench.analysis.verdict import intervals

    cells = len(study.correct)
    groups = study.groups if study.scenario.group_size > 1 else None
    stochastic = [study.scenario.stochastic] * cells
    table = intervals.compare_cells(
        study.correct,
        reference=0,
        groups=groups,
        stochastic=stochastic,
        margin=study.scenario.margin,
        level=level,
        reps=reps,
        rng=seed,
    )
    replicates = replicate.bootstrap(
        study.correct, reps, seed, groups=groups, stochastic=stochastic
    )
    alone = intervals.intervals(
        replicates, [(c, None) for c in range(cells)], level, simultaneous=False
    )
    if table["cell"].tolist() != list(range(1, cells)):
        raise ValueError(f"compare_cells returned cells {table['cell'].tolist()}")
    return {
        "accuracy": alone[["low", "high"]].to_numpy().tolist(),
        "difference": table[["marginal_low", "marginal_high"]].to_numpy().tolist(),
        "band": table[["low", "high"]].to_numpy().tolist(),
        "outcome": table["outcome"].tolist(),
        "said": table["outcome"].tolist(),
    }


ADAPTERS = {"before": before, "after": after}
