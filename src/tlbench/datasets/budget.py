"""Label budgets: nested, stratified subsets of a training split.

A study's dataset entry may list ``budgets``: images per class (integers >= 1),
fractions of the training split (floats in (0, 1)) and ``all`` (the default).
Each budget is an axis of the study like a seed: its runs train on a subset of
the prepared training split and see the same validation and test splits.

:func:`subset_indices` draws the subset: per class one permutation of the
class's training images, drawn from ``(run seed, class)`` and independent of
the budget, of which the budget takes the first ``k`` -- so the subsets of one
seed are nested by construction (the 5 images of a class are among its 10 for
that seed) and stratified, and the seeds of a cell train on different draws of
images, so budget curves carry the variation of which images were labelled.
The seed is recorded (``budget_seed``). A budget larger than a class takes the whole class, with a warning;
the counts used are recorded (:func:`subset`).

Budgets have a *label* used in run paths and tables: ``all``, ``n10`` (10 per
class), ``f0.25`` (a quarter of every class). A run folder of budget ``all``
keeps the path it had before budgets existed (``.../seed0``); others get the
label as a suffix (``.../seed0_n10``).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

ALL = "all"
#: Part of the subset's random stream (apart from the run's other uses of its seed).
STREAM = 20
LABEL_PATTERN = re.compile(r"n[1-9]\d*|f0\.\d*[1-9]")
#: Snakemake wildcard constraint of a run path's budget suffix ('' for ``all``).
SUFFIX_PATTERN = r"(_n[1-9]\d*|_f0\.\d*[1-9])?"


class BudgetError(ValueError):
    """A label budget that is neither ``all``, a positive integer nor a fraction in (0, 1)."""


Budget = int | float | str


def check_budget(value: Any, where: str = "budget") -> Budget:
    """``value`` as a budget (``"all"``, an int >= 1 or a float in (0, 1)); an error
    naming ``where`` and the value otherwise. Integral floats (``10.0``) are ints."""
    if value == ALL and isinstance(value, str):
        return ALL
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise BudgetError(
            f"{where}: {value!r} is not a label budget; use 'all', images per class "
            "(an integer >= 1) or a fraction of the training split (a number in (0, 1))"
        )
    if isinstance(value, int | np.integer) or float(value).is_integer():
        if value < 1:
            raise BudgetError(
                f"{where}: {value!r} images per class; a budget needs at least 1 "
                "(or a fraction in (0, 1), or 'all')"
            )
        return int(value)
    value = float(value)
    if not 0.0 < value < 1.0 or not math.isfinite(value):
        raise BudgetError(
            f"{where}: {value!r} is neither images per class (an integer >= 1) "
            "nor a fraction in (0, 1)"
        )
    return value


def label(budget: Any) -> str:
    """The budget's label: ``all``, ``n<k>`` or ``f<fraction>``."""
    budget = check_budget(budget)
    if budget == ALL:
        return ALL
    if isinstance(budget, int):
        return f"n{budget}"
    text = f"f{budget!r}"
    if not LABEL_PATTERN.fullmatch(text):
        raise BudgetError(
            f"budget: fraction {budget!r} has no plain decimal form ({text}); "
            "use a fraction of at least 0.0001"
        )
    return text


def from_label(text: str) -> Budget:
    """The budget of a label (inverse of :func:`label`)."""
    if text == ALL:
        return ALL
    if not LABEL_PATTERN.fullmatch(text):
        raise BudgetError(f"budget label {text!r} is not 'all', 'n<k>' or 'f<fraction>'")
    return int(text[1:]) if text[0] == "n" else float(text[1:])


def path_suffix(text: str) -> str:
    """Suffix of a run folder for budget label ``text`` ('' for ``all``)."""
    from_label(text)
    return "" if text == ALL else f"_{text}"


def from_suffix(suffix: str) -> str:
    """The budget label of a run path's suffix (inverse of :func:`path_suffix`)."""
    if suffix == "":
        return ALL
    if not suffix.startswith("_"):
        raise BudgetError(f"budget suffix {suffix!r} does not start with '_'")
    text = suffix[1:]
    from_label(text)
    return text


def class_count(budget: Budget, available: int) -> int:
    """Images of a class with ``available`` training images that ``budget`` takes."""
    if budget == ALL:
        return available
    if isinstance(budget, int):
        return min(budget, available)
    return min(available, max(1, math.floor(budget * available + 0.5)))


def class_permutation(labels: np.ndarray, cls: int, seed: int) -> np.ndarray:
    """Indices (into ``labels``) of class ``cls`` in the order budgets take them."""
    members = np.flatnonzero(labels == cls)
    rng = np.random.default_rng([int(seed), STREAM, int(cls)])
    return members[rng.permutation(len(members))]


def subset_indices(labels: Sequence[int] | np.ndarray, budget: Any, seed: int) -> np.ndarray:
    """Sorted indices of the training images a budget keeps (see the module docstring)."""
    return subset(labels, budget, seed)[0]


def subset(
    labels: Sequence[int] | np.ndarray,
    budget: Any,
    seed: int,
    classes: Sequence[str] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """``(indices, record)``: the kept indices (sorted) and what to record in metrics.json:
    ``budget`` (label), ``budget_seed`` (the run's seed it was drawn from), ``budget_per_class_used`` (class name -> images),
    ``budget_per_class_min``/``_max``/``_mean`` and ``budget_capped`` (classes with fewer
    images than the budget; they were taken whole, and a warning says so)."""
    budget = check_budget(budget)
    labels = np.asarray(labels)
    present = np.unique(labels).tolist()
    names = [str(c) for c in classes] if classes is not None else [str(c) for c in present]
    kept, used, capped = [], {}, []
    for cls in present:
        order = class_permutation(labels, cls, seed)
        k = class_count(budget, len(order))
        name = names[int(cls)] if classes is not None else str(cls)
        if isinstance(budget, int) and budget > len(order):
            capped.append(name)
        kept.append(order[:k])
        used[name] = int(k)
    if capped:
        warnings.warn(
            f"label budget {budget} per class exceeds the training images of "
            f"{len(capped)} class(es) ({', '.join(capped)}): they are taken whole",
            stacklevel=2,
        )
    indices = np.sort(np.concatenate(kept)) if kept else np.zeros(0, np.int64)
    counts = list(used.values()) or [0]
    record = {
        "budget": label(budget),
        "budget_seed": int(seed),
        "budget_per_class_used": used,
        "budget_per_class_min": int(min(counts)),
        "budget_per_class_max": int(max(counts)),
        "budget_per_class_mean": float(np.mean(counts)),
        "budget_capped": capped,
    }
    return indices.astype(np.int64), record
