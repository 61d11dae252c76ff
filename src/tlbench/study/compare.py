"""The study ``tlbench compare PATH`` and ``tlbench init PATH`` write for a folder (or zip/tar)
of class folders: a default matrix sized to the data, the machine and ``--hours``.

:func:`inspect_folder` surveys the folder (the ``folder`` loader's own survey) and fails
once, clearly, when it is not a dataset. :func:`plan` builds the study config: the ImageNet
backbones whose weight files the Keras cache holds (``tlbench.study.defaults``), the
strategies from a linear probe through full fine-tuning plus the first backbone's
architecture trained from scratch, label budgets when every class has enough training
images, three seeds, and a LogME prescreen when there are more than
:data:`PRESCREEN_ABOVE` backbones. :func:`estimate` is the cost model: seconds per image per
backbone from ``costs.yaml`` (measured by ``benchmarks/bench_costs.py``), scaled by pixels,
times the images each run reads. It is an estimate (an upper bound on epochs: early
stopping ends most runs sooner; a busy machine is slower). With ``hours``, :func:`plan`
shrinks the matrix step by step (budgets, backbones, image side, epochs) until the estimate
fits, and says what it dropped.
"""

from __future__ import annotations

import math
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tlbench.datasets.folder import open_tree, survey
from tlbench.study.defaults import ImageNetBackbone, load_costs

#: Above this many backbones a LogME prescreen keeps the best :data:`PRESCREEN_KEEP`.
PRESCREEN_ABOVE = 3
PRESCREEN_KEEP = 3
SEEDS = [0, 1, 2]
#: Image sides tried, largest first, when the estimate exceeds the hours asked.
SIDES = (128, 96, 64, 32)
EPOCHS = (20, 10, 5)
#: Label budgets (images per class) offered when every class has this many training images.
BUDGETS = ((100, [10, 50]), (40, [10]))
#: The fractions the folder loader carves (its defaults) when there is no val/ or test/.
TEST_FRACTION, VAL_FRACTION = 0.2, 0.1
TRAINED = ("two_phase", "fine_tune", "scratch")  # strategies that train the whole network


@dataclass
class DataSummary:
    """A folder of class folders: its classes with image counts, and its split layout."""

    source: Path
    per_class: dict[str, int]
    splits: dict[str, int]
    pool_per_class: dict[str, int] = field(default_factory=dict)

    @property
    def images(self) -> int:
        return sum(self.splits.values())

    @property
    def train_per_class(self) -> int:
        """Training images of the smallest class, after the loader carves val and test."""
        share = 1.0
        if "test" not in self.splits:
            share *= 1 - TEST_FRACTION
        if "val" not in self.splits:
            share *= 1 - VAL_FRACTION
        return int(min((self.pool_per_class or self.per_class).values()) * share)

    def split_sizes(self) -> dict[str, float]:
        """Images per split (train, val, test) as the loader will make them."""
        n = dict(self.splits)
        if "all" in n:
            n = {"train": n["all"]}
        if "test" not in n:
            n["test"] = n["train"] * TEST_FRACTION
            n["train"] -= n["test"]
        if "val" not in n:
            n["val"] = n["train"] * VAL_FRACTION
            n["train"] -= n["val"]
        return n


def inspect_folder(path: str | Path) -> DataSummary:
    """Survey ``path`` (folder, zip or tar of class folders); a path that is not such a
    dataset raises one ``ValueError`` saying what was expected and what was found."""
    source = Path(path).expanduser().resolve()
    expected = (
        f"{path} is not a dataset: tlbench compare expects a folder (or a zip/tar of one) "
        "with one subfolder of images per class, e.g. PATH/cats/*.jpg and PATH/dogs/*.jpg "
        "(optionally inside train/, val/, test/)"
    )
    if not source.exists():
        raise ValueError(f"{expected}; {path} does not exist")
    if not source.is_dir() and not source.name.lower().endswith(
        (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
    ):
        raise ValueError(f"{expected}; {path} is a file that is not a zip or tar archive")
    cleanup: list = []
    try:  # the loader's own reader (a tar is extracted into the work folder)
        with tempfile.TemporaryDirectory() as work:
            found = survey(open_tree(source, Path(work), cleanup))
    except ValueError as error:
        raise ValueError(f"{expected}; found: {error}") from None
    finally:
        for close in cleanup:
            close()
    per_class: dict[str, int] = {}
    for items in found.splits.values():
        for _, cls in items:
            per_class[cls] = per_class.get(cls, 0) + 1
    if len(per_class) < 2:
        found_classes = ", ".join(repr(c) for c in per_class) or "none"
        raise ValueError(f"{expected}; found one class folder with images ({found_classes})")
    splits = {split: len(items) for split, items in found.splits.items()}
    pool = {cls: 0 for cls in per_class}  # the images training is carved from
    for _, cls in found.splits.get("train", found.splits.get("all", [])):
        pool[cls] += 1
    return DataSummary(source, per_class, splits, pool)


def dataset_name(data: DataSummary) -> str:
    """The study's name of the dataset: the folder's name in letters, digits and ``_``."""
    stem = data.source.name.split(".")[0] if data.source.is_file() else data.source.name
    return re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_") or "data"


@dataclass
class Plan:
    """A sized default study: its settings, the estimate and what sizing dropped."""

    backbones: list[ImageNetBackbone]
    side: int = SIDES[0]
    epochs: int = EPOCHS[0]
    budgets: list[int] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: list(SEEDS))
    notes: list[str] = field(default_factory=list)

    @property
    def trained_backbones(self) -> list[ImageNetBackbone]:
        """The backbones runs train on: all, or the prescreen's ``keep`` costliest (bound)."""
        if len(self.backbones) > PRESCREEN_ABOVE:
            return self.backbones[-PRESCREEN_KEEP:]
        return self.backbones


def estimate(plan: Plan, data: DataSummary, costs: dict[str, Any] | None = None) -> float:
    """Estimated seconds of the study (see the module docstring for the cost model)."""
    costs = load_costs() if costs is None else costs
    table, scale = costs["seconds_per_image"], (plan.side / costs["side"]) ** 2
    n = data.split_sizes()
    evaluated = n["val"] + n["test"]
    classes = len(data.per_class)
    trains = [n["train"]] + [min(n["train"], b * classes) for b in plan.budgets]
    seconds = costs["workflow_seconds"] + costs["prepare_seconds_per_image"] * data.images
    for entry in plan.backbones:  # one feature cache per backbone (prescreen and probes)
        seconds += table[entry.key]["forward"] * scale * data.images
    for entry in plan.trained_backbones:
        cost = table[entry.key]
        for images in trains:
            epoch = images * cost["train"] * scale + n["val"] * cost["forward"] * scale
            one = plan.epochs * epoch + evaluated * cost["forward"] * scale
            # two_phase and fine_tune on this backbone; linear_probe and feature_extraction
            # read the feature cache (their heads' cost is the per-run overhead)
            seconds += len(plan.seeds) * (2 * one + 2 * costs["run_overhead_seconds"])
    scratch = table[plan.backbones[0].key]
    for images in trains:
        epoch = images * scratch["train"] * scale + n["val"] * scratch["forward"] * scale
        seconds += len(plan.seeds) * (plan.epochs * epoch + evaluated * scratch["forward"] * scale)
        seconds += len(plan.seeds) * costs["run_overhead_seconds"]
    return seconds


def plan(
    data: DataSummary,
    backbones: list[ImageNetBackbone],
    hours: float | None = None,
    costs: dict[str, Any] | None = None,
    side: int | None = None,
    epochs: int | None = None,
    seeds: int | None = None,
) -> tuple[Plan, float]:
    """The default plan for ``data`` and its estimate in seconds (backbones cheapest first by
    the cost table: the first one's architecture is the scratch baseline, the last is dropped
    first); with ``hours``, shrunk
    until the estimate fits (``ValueError`` naming the smallest estimate when nothing does).
    ``side``, ``epochs`` and ``seeds`` fix those settings (sizing leaves them)."""
    if not backbones:
        raise ValueError("no ImageNet backbone to compare: see tlbench.study.defaults")
    for name, value, least in (("--image-size", side, 32), ("--epochs", epochs, 1),
                               ("--seeds", seeds, 1)):  # fmt: skip
        if value is not None and value < least:
            raise ValueError(f"{name} {value}: must be at least {least}")
    if hours is not None and not hours > 0:
        raise ValueError(f"--hours {hours:g}: must be more than 0")
    costs = load_costs() if costs is None else costs
    table = costs["seconds_per_image"]
    current = Plan(sorted(backbones, key=lambda entry: table[entry.key]["train"]))  # cheapest first
    if side is not None:
        current.side = side
    if epochs is not None:
        current.epochs = epochs
    if seeds is not None:
        current.seeds = list(range(seeds))
    for least, budgets in BUDGETS:
        if data.train_per_class >= least:
            current.budgets = list(budgets)
            break
    seconds = estimate(current, data, costs)
    if hours is None or seconds <= hours * 3600:
        return current, seconds
    for step in _shrink_steps(current, side is None, epochs is None):
        current = step
        seconds = estimate(current, data, costs)
        if seconds <= hours * 3600:
            return current, seconds
    raise ValueError(
        f"the smallest study tlbench compare would run here needs an estimated "
        f"{seconds / 3600:.2f} h (backbone {current.backbones[0].key}, {current.side} px, "
        f"{current.epochs} epochs, {len(current.seeds)} seeds), more than --hours {hours:g}; "
        "ask for more hours"
    )


def _shrink_steps(start: Plan, sides: bool, epochs: bool):
    """Smaller plans, one change at a time, each with a note saying what changed."""
    current = start
    if current.budgets:
        current = replace(current, budgets=[], notes=[*current.notes, "label budgets dropped"])
        yield current
    while len(current.backbones) > 1:
        dropped = current.backbones[-1]
        current = replace(
            current,
            backbones=current.backbones[:-1],
            notes=[*current.notes, f"backbone {dropped.key} dropped (the costliest)"],
        )
        yield current
    for smaller in SIDES if sides else ():
        if smaller < current.side:
            note = f"image side {current.side} -> {smaller} px"
            current = replace(current, side=smaller, notes=[*current.notes, note])
            yield current
    for fewer in EPOCHS if epochs else ():
        if fewer < current.epochs:
            note = f"epochs {current.epochs} -> {fewer}"
            current = replace(current, epochs=fewer, notes=[*current.notes, note])
            yield current


def study_config(data: DataSummary, chosen: Plan, results: str = "results") -> dict[str, Any]:
    """The study config of ``chosen`` for ``data`` (an ordinary config: edit and rerun it)."""
    dataset = {"loader": "folder", "source": str(data.source), "image_size": chosen.side}
    if chosen.budgets:
        dataset["budgets"] = [*chosen.budgets, "all"]
    name = dataset_name(data)
    backbones = {entry.key: entry.config() for entry in chosen.backbones}
    scratch_key = f"{chosen.backbones[0].key}_scratch"
    backbones[scratch_key] = chosen.backbones[0].config(weights="none")
    keys = [entry.key for entry in chosen.backbones]
    block: dict[str, Any] = {
        "description": "transfer from ImageNet: linear probe through full fine-tuning",
        "datasets": [name],
        "backbones": keys,
        "strategies": ["linear_probe", "feature_extraction", "two_phase", "fine_tune"],
        "augmentations": ["none"],
    }
    if len(keys) > PRESCREEN_ABOVE:
        block["prescreen"] = {"score": "logme", "keep": PRESCREEN_KEEP}
    return {
        "results": results,
        "datasets": {name: dataset},
        "backbones": backbones,
        "strategies": {
            "linear_probe": {"name": "linear_probe"},
            "feature_extraction": {"name": "feature_extraction"},
            "two_phase": {"name": "two_phase"},
            "fine_tune": {"name": "fine_tune", "training": {"learning_rate": 0.0001}},
            "scratch": {"name": "scratch"},
        },
        "augmentations": {"none": {"name": "none"}},
        "training": {
            "epochs": chosen.epochs,
            "batch_size": 32,
            # no monitor: val_accuracy, or the validation figure of a selection.metric added
            "early_stopping": {"patience": max(2, chosen.epochs // 4)},
        },
        "seeds": list(chosen.seeds),
        "matrix": [
            block,
            {
                "description": f"baseline: {chosen.backbones[0].key}'s architecture, no pretraining",
                "datasets": [name],
                "backbones": [scratch_key],
                "strategies": ["scratch"],
                "augmentations": ["none"],
            },
        ],
    }


def describe(chosen: Plan, data: DataSummary, seconds: float) -> str:
    """What the study compares and its estimate, in a few lines for the terminal."""
    keys = ", ".join(entry.key for entry in chosen.backbones)
    budgets = f"; label budgets {chosen.budgets} per class and all" if chosen.budgets else ""
    prescreen = (
        f" (LogME prescreen keeps {PRESCREEN_KEEP})"
        if len(chosen.backbones) > PRESCREEN_ABOVE
        else ""
    )
    lines = [
        f"{data.source}: {len(data.per_class)} classes, {data.images} images "
        f"(smallest class {min(data.per_class.values())})",
        f"backbones: {keys}{prescreen}; strategies: linear_probe, feature_extraction, "
        f"two_phase, fine_tune, and scratch; {len(chosen.seeds)} seed{'' if len(chosen.seeds) == 1 else 's'}; {chosen.side} px; "
        f"at most {chosen.epochs} epochs{budgets}",
        f"estimated time: {_duration(seconds)} (an estimate from src/tlbench/study/costs.yaml; "
        "early stopping usually ends runs sooner, a busy machine is slower)",
    ]
    if chosen.notes:
        lines.append("to fit --hours: " + "; ".join(chosen.notes))
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    minutes = math.ceil(seconds / 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes / 60:.1f} h"
