"""Simulated studies whose truth is known, for benchmarks/bench_verdict_calibration.py.

A study is a dataset's cells (cell 0 the reference every other cell is compared with), each
with ``seeds`` runs that classify the same ``images`` test images right or wrong. Run r of
cell c classifies image i correctly with probability ``Phi(eta)``, a probit model:

    eta = a_c + g_k(i) + v_c,k(i) + e_i + w_c,i + s_c,r + b_c(,r)

* ``g`` (``sd_group``): the image group's difficulty, shared by every cell (a GTSRB track of
  about 30 frames of one sign); ``v`` (``sd_group_cell``): how cell c fares on the group;
* ``e`` (``sd_image``): the image's own difficulty, shared by every cell, so the paired
  differences of two cells are correlated; ``w`` (``sd_cell_image``): cell c on image i;
* ``s`` (``sd_seed``, times ``seed_scale[c]`` where given): the run's seed
  (initialisation, order, augmentation); ``seed_scale`` lets the seed spread differ by cell
  (a network trained from scratch varies with the seed more than a frozen backbone's head);
* ``b`` (``sd_subset``): which images the label budget gave the run to train on. Drawn once
  per cell (``subsets="dataset"``: every seed trains on the same subset) or once per run
  (``subsets="seed"``: the subset follows the run's seed).

All terms are independent normals, so ``eta - a_c`` is ``N(0, t2_c)`` with ``t2_c`` the sum
of cell c's variances, and ``E[Phi(a + N(0, t2))] = Phi(a / sqrt(1 + t2))``; ``a_c =
Phi^-1(p_c) sqrt(1 + t2_c)`` makes ``p_c`` exactly the cell's true accuracy: its expected test
accuracy over the population of images (and groups), seeds and label-budget draws, the
quantity the verdict's intervals are about. ``p_c - p_0`` is the true difference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

#: Truth classes of a comparison with the reference: the true difference is 0, lies
#: strictly inside the margin, or beyond it.
CLASSES = ("zero", "inside", "beyond")


@dataclass(frozen=True)
class Scenario:
    """One kind of study: its cells' true accuracies and its sources of variation."""

    name: str
    text: str  #: one line for the page
    reference: float = 0.85  #: true accuracy of cell 0
    #: true differences of cells 1.. from cell 0, in units of the margin
    differences: tuple[float, ...] = (0.0, 0.0, 0.0, 0.5, -0.5, 1.5, -3.0)
    margin: float = 0.01
    images: int = 3000
    group_size: int = 1  #: images per group (1: independent images)
    seeds: int = 3
    sd_group: float = 0.0
    sd_group_cell: float = 0.0
    sd_image: float = 1.0
    sd_cell_image: float = 0.4
    sd_seed: float = 0.1
    #: per cell (cell 0 first) the factor of ``sd_seed``; empty: 1 for every cell
    seed_scale: tuple[float, ...] = ()
    sd_subset: float = 0.0
    stochastic: bool = True  #: runs of one cell differ with the seed

    def __post_init__(self) -> None:
        if self.images % self.group_size:
            raise ValueError(
                f"scenario {self.name!r}: images {self.images} is not a multiple of "
                f"group_size {self.group_size}"
            )
        if self.seeds < 1 or self.margin <= 0:
            raise ValueError(f"scenario {self.name!r}: seeds {self.seeds}, margin {self.margin}")
        if self.seed_scale and (
            len(self.seed_scale) != len(self.accuracies) or min(self.seed_scale) <= 0
        ):
            raise ValueError(
                f"scenario {self.name!r}: seed_scale {self.seed_scale} needs one factor > 0 "
                f"per cell ({len(self.accuracies)})"
            )
        if not all(0 < p < 1 for p in self.accuracies):
            raise ValueError(f"scenario {self.name!r}: true accuracies {self.accuracies}")

    @property
    def accuracies(self) -> tuple[float, ...]:
        """True accuracy of every cell, the reference first."""
        return (self.reference, *(self.reference + d * self.margin for d in self.differences))

    @property
    def truth(self) -> tuple[float, ...]:
        """True difference of cells 1.. from cell 0."""
        p = self.accuracies
        return tuple(x - p[0] for x in p[1:])

    def truth_class(self, difference: float) -> str:
        """``zero``, ``inside`` or ``beyond`` (the margin) for a true difference."""
        if abs(difference) < 1e-12:
            return "zero"
        if abs(difference) < self.margin:
            return "inside"
        if abs(difference) > self.margin:
            return "beyond"
        raise ValueError(f"scenario {self.name!r}: a true difference equals the margin")

    @property
    def seed_sds(self) -> tuple[float, ...]:
        """Per cell the sd of its seed term: ``sd_seed`` times its ``seed_scale``."""
        scale = self.seed_scale or (1.0,) * len(self.accuracies)
        return tuple(self.sd_seed * f for f in scale)

    @property
    def total_variances(self) -> tuple[float, ...]:
        """Per cell ``t2_c``: the variance of ``eta - a_c`` (see the module docstring)."""
        grouped = (self.sd_group, self.sd_group_cell) if self.group_size > 1 else (0.0, 0.0)
        return tuple(
            sum(x * x for x in (self.sd_image, self.sd_cell_image, seed, self.sd_subset, *grouped))
            for seed in self.seed_sds
        )


@dataclass
class Study:
    """One simulated study: what the verdict code is given, and the truth beside it."""

    correct: list[np.ndarray]  #: per cell (seeds, images) bool
    groups: np.ndarray  #: (images,) int: the group of each image
    scenario: Scenario = field(repr=False)


def simulate(
    scenario: Scenario, rng: np.random.Generator, subsets: str = "dataset", seeds: int | None = None
) -> Study:
    """One study of ``scenario`` (``seeds`` overrides the scenario's)."""
    if subsets not in ("dataset", "seed"):
        raise ValueError(f"subsets must be 'dataset' or 'seed', got {subsets!r}")
    s = scenario
    seeds = s.seeds if seeds is None else seeds
    n, k = s.images, len(s.accuracies)
    groups = np.arange(n) // s.group_size
    n_groups = n // s.group_size
    a = stats.norm.ppf(np.array(s.accuracies)) * np.sqrt(1 + np.array(s.total_variances))
    seed_sds = s.seed_sds
    shared = rng.normal(0, s.sd_image, n)
    if s.group_size > 1:
        shared += rng.normal(0, s.sd_group, n_groups)[groups]
    correct = []
    for c in range(k):
        cell = a[c] + shared + rng.normal(0, s.sd_cell_image, n)
        if s.group_size > 1:
            cell += rng.normal(0, s.sd_group_cell, n_groups)[groups]
        subset = rng.normal(0, s.sd_subset, (seeds if subsets == "seed" else 1, 1))
        eta = cell[None, :] + rng.normal(0, seed_sds[c], (seeds, 1)) + subset
        correct.append(rng.random((seeds, n)) < stats.norm.cdf(eta))
    return Study(correct, groups, scenario)


#: ``seed_scale`` of the uneven scenarios: the reference and every other cell with a small
#: seed spread, the rest with a tenfold one (two of the three cells with no true difference).
UNEVEN = (1.0, 10.0, 1.0, 10.0, 1.0, 10.0, 1.0, 10.0)

#: The scenarios of the page. Variances are on the probit scale: at accuracy 0.85,
#: ``sd_seed`` 0.1 is a seed-to-seed sd of one run's test accuracy of about 0.015 on 3 000
#: images (the page gives each scenario's, as simulated).
SCENARIOS = (
    Scenario("independent-3", "3 000 independent test images, 3 seeds"),
    Scenario("independent-1", "3 000 independent test images, 1 seed", seeds=1),
    Scenario("independent-5", "3 000 independent test images, 5 seeds", seeds=5),
    Scenario(
        "seed-dominated-3",
        "seed-to-seed spread dominates, 3 seeds",
        sd_seed=0.3,
    ),
    Scenario(
        "tracks-3",
        "tracks of 30 correlated images (100 tracks, as GTSRB), 3 seeds",
        group_size=30,
        sd_group=0.6,
        sd_group_cell=0.3,
    ),
    Scenario(
        "tracks-1",
        "tracks of 30 correlated images (100 tracks), 1 seed",
        group_size=30,
        sd_group=0.6,
        sd_group_cell=0.3,
        seeds=1,
    ),
    Scenario(
        "tracks-5",
        "tracks of 30 correlated images (100 tracks), 5 seeds",
        group_size=30,
        sd_group=0.6,
        sd_group_cell=0.3,
        seeds=5,
    ),
    Scenario(
        "budget-3",
        "label budget: which images were labelled moves each cell's accuracy, 3 seeds",
        sd_subset=0.1,
        reference=0.75,
    ),
    Scenario(
        "small-3",
        "400 independent test images (a small folder dataset), margin 0.05, 3 seeds",
        images=400,
        margin=0.05,
        differences=(0.0, 0.0, 0.0, 0.5, -0.5, 1.25, -2.5),
    ),
    Scenario(
        "precise-5",
        "10 000 test images, small seed spread, margin 0.02, 5 seeds: equivalence within reach",
        images=10000,
        margin=0.02,
        seeds=5,
        sd_seed=0.03,
        differences=(0.0, 0.0, 0.0, 0.5, -0.5, 1.25, -1.25),
    ),
    Scenario(
        "uneven-3",
        "seed spread tenfold in every other cell (scratch beside frozen backbones): a run's "
        "accuracy varies by about 0.05 from seed to seed there, 0.007 elsewhere; 3 seeds",
        sd_seed=0.03,
        seed_scale=UNEVEN,
    ),
    Scenario(
        "uneven-5",
        "seed spread tenfold in every other cell, as uneven-3; 5 seeds",
        sd_seed=0.03,
        seed_scale=UNEVEN,
        seeds=5,
    ),
)
