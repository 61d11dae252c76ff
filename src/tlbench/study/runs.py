"""The study's runs: one cell of the matrix (:class:`Run`) and the matrix blocks expanded
into them (:func:`expand_runs`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from tlbench.core.errors import StudyConfigError
from tlbench.datasets.budget import ALL as BUDGET_ALL
from tlbench.datasets.budget import path_suffix as budget_suffix
from tlbench.study.config import SECTIONS


@dataclass(frozen=True, order=True)
class Run:
    """One cell of the study matrix; ``block`` is the index of its matrix block."""

    dataset: str
    backbone: str
    strategy: str
    augmentation: str
    seed: int
    block: int = 0
    #: Label budget (tlbench.datasets.budget label: ``all``, ``n10``, ``f0.25``).
    budget: str = BUDGET_ALL

    @property
    def names(self) -> dict[str, Any]:
        """The run's wildcards: dataset, backbone, strategy, augmentation, seed (and its
        label budget, unless ``all``)."""
        names = {
            "dataset": self.dataset,
            "backbone": self.backbone,
            "strategy": self.strategy,
            "augmentation": self.augmentation,
            "seed": self.seed,
        }
        if self.budget != BUDGET_ALL:
            names["budget"] = self.budget
        return names

    @property
    def relpath(self) -> str:
        """Folder of the run below ``<results>/runs`` (budget ``all``: no suffix)."""
        return (
            f"{self.dataset}/{self.backbone}/{self.strategy}/{self.augmentation}/seed{self.seed}"
            + budget_suffix(self.budget)
        )

    def __str__(self) -> str:
        return self.relpath


def expand_runs(config: dict[str, Any]) -> list[Run]:
    """Expand the matrix blocks into runs; a cell listed by two blocks is an error."""
    seen: dict[Run, int] = {}
    clashes: list[str] = []
    runs: list[Run] = []
    for index, block in enumerate(config["matrix"]):
        seeds = block.get("seeds", config["seeds"])
        for *cell, seed in itertools.product(*(block[s] for s in SECTIONS), seeds):
            budgets = config["datasets"][cell[0]].get("budgets", [BUDGET_ALL])
            for budget in budgets:
                run = Run(*cell, seed, block=index, budget=budget)
                key = Run(*cell, seed, budget=budget)
                if key in seen:
                    clashes.append(f"{key} (blocks {seen[key]} and {index})")
                    continue
                seen[key] = index
                runs.append(run)
    if clashes:
        raise StudyConfigError(
            "invalid study config: matrix: runs listed by more than one block: "
            + "; ".join(clashes)
        )
    return runs
