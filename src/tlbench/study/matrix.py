"""The study: a checked config and its runs (:class:`Study`), with the paths and run
specs the Snakemake workflow uses.

A study config (``config.yaml``, format in ``schemas/config.schema.yaml``)
names datasets, backbones, strategies and augmentations, and lists matrix
blocks, each the cross product of some of those names and seeds.
:func:`tlbench.study.load.load_study` checks it and expands the blocks into runs
(:mod:`tlbench.study.runs`); ``Study.run_spec`` turns one run into the engine's run
spec (docs/ARCHITECTURE.md), with the paths:

``<results>/prepared/<dataset>``, ``<results>/pretrained/<backbone>``,
``<results>/features/<dataset>/<backbone>`` and
``<results>/runs/<dataset>/<backbone>/<strategy>/<augmentation>/seed<seed>``.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from tlbench.analysis.ledger import ledger_path
from tlbench.core.errors import StudyConfigError
from tlbench.datasets.budget import ALL as BUDGET_ALL
from tlbench.datasets.budget import from_label as budget_value
from tlbench.datasets.budget import from_suffix
from tlbench.strategies.base import STRATEGIES
from tlbench.study.config import load_schema, pretrain_config
from tlbench.study.runs import Run

# Strategies with a head-only phase (backbone frozen), and those that fit a probe on the
# frozen backbone's features (``features_only``: linear_probe, lp_ft): without augmentation, and
# with weights that have an identity (pretrained, or {random: SEED}; not `none`, drawn
# from each run's seed), their runs read the backbone's features from a cache computed
# once per (dataset, backbone) by `backbone_features`.
HEAD_ONLY_STRATEGIES = frozenset(
    name
    for name in STRATEGIES
    if STRATEGIES.get(name).features_only or STRATEGIES.get(name).head_only_phase
)
# Strategies that always start from random weights (``forces_weights: none``):
# their runs neither get nor wait for the backbone's pretrained weights.
RANDOM_INIT_STRATEGIES = frozenset(
    name for name in STRATEGIES if STRATEGIES.get(name).forces_weights == "none"
)
NO_AUGMENTATION = "none"
# Loaders that read official archives: their `source` defaults to <data_mirror>/<loader>.
MIRRORED_LOADERS = frozenset({"gtsrb", "oxford_iiit_pet", "hymenoptera"})


# --------------------------------------------------------------------------- the study


class Study:
    """A validated study: its runs and the specs and paths of every workflow step."""

    def __init__(self, config: dict[str, Any], runs: list[Run]):
        self.config = config
        self.runs = runs
        self.results: str = results_folder(config)
        self._by_names = {dataclasses.replace(r, block=0): r for r in runs}

    @property
    def pilot(self) -> bool:
        """Whether this is a pilot study (``pilot: true``): its test splits stay sealed."""
        return bool(self.config.get("pilot", False))

    @property
    def ledger_path(self) -> str:
        """The test-split ledger of the study (tlbench.analysis.ledger)."""

        return str(ledger_path(self.results))

    # ---- the seed study this config reproduces (``seed_study``), if any
    @property
    def seed_study(self) -> dict[str, Any] | None:
        """The ``seed_study`` block with its ``page`` default filled in (None: not a seed study)."""
        block = self.config.get("seed_study")
        if block is None:
            return None
        page = block.get("page") or f"docs/results/seed{block['reference']}.md"
        return {"substitutions": [], **block, "page": page}

    @property
    def results_section(self) -> dict[str, Any] | None:
        """The ``results_section`` block (``title``, ``page``); None: the study has no
        section of its own on the results page."""
        block = self.config.get("results_section")
        return None if block is None else dict(block)

    # ---- lookups
    def run(
        self,
        dataset: str,
        backbone: str,
        strategy: str,
        augmentation: str,
        seed: Any,
        budget: str = BUDGET_ALL,
    ) -> Run:
        """The study's run with these wildcards (``seed`` may be a string; ``budget`` a
        budget label or a run path's budget suffix: ``_n10``, ``''`` for ``all``)."""
        if budget == "" or budget.startswith("_"):
            budget = from_suffix(budget)
        key = Run(dataset, backbone, strategy, augmentation, int(seed), budget=budget)
        try:
            return self._by_names[key]
        except KeyError:
            raise StudyConfigError(f"run {key} is not part of the study's matrix") from None

    # ---- prescreened blocks (``prescreen``: only the best-scored backbones are trained)
    def prescreen(self, block: int) -> dict[str, Any] | None:
        """The ``prescreen`` of matrix block ``block`` (None: every backbone is trained)."""
        return self.config["matrix"][block].get("prescreen")

    @property
    def prescreened_blocks(self) -> list[int]:
        """Indices of the matrix blocks with a ``prescreen``."""
        return [i for i in range(len(self.config["matrix"])) if self.prescreen(i) is not None]

    @property
    def unscreened_runs(self) -> list[Run]:
        """The runs of blocks without a ``prescreen`` (trained whatever any score says)."""
        return [r for r in self.runs if self.prescreen(r.block) is None]

    def prescreen_pairs(self, block: int) -> list[tuple[str, str]]:
        """The (dataset, backbone) pairs a prescreened block scores."""
        return sorted({(r.dataset, r.backbone) for r in self.runs if r.block == block})

    def screened_runs(self, block: int, kept: Mapping[str, Any]) -> list[Run]:
        """The runs of a prescreened block on its kept backbones (``kept``: dataset ->
        backbone names, as :func:`tlbench.analysis.transferability.prescreen.kept_backbones` reads them)."""
        return [r for r in self.runs if r.block == block and r.backbone in kept.get(r.dataset, ())]

    def prescreen_table(self, block: int) -> str:
        """Stem of the prescreen table of a block (``.csv``, ``.md``, ``.html``)."""
        return f"{self.results}/tables/prescreen_block{block}"

    def runs_of(self, dataset: str) -> list[Run]:
        """The runs on one dataset."""
        return [r for r in self.runs if r.dataset == dataset]

    @property
    def datasets(self) -> list[str]:
        """Target datasets (those with runs), in config order."""
        used = {r.dataset for r in self.runs}
        return [d for d in self.config["datasets"] if d in used]

    @property
    def pretrained_backbones(self) -> list[str]:
        """Backbones used by runs whose weights come from a pretraining run."""
        used = {r.backbone for r in self.runs}
        return [
            b
            for b, cfg in self.config["backbones"].items()
            if b in used and pretrain_config(cfg) is not None
        ]

    def pretrain_dataset(self, backbone: str) -> str | None:
        """The dataset a backbone is pretrained on, or None."""
        pretrain = pretrain_config(self.config["backbones"][backbone])
        return None if pretrain is None else pretrain["dataset"]

    # ---- paths
    def prepared_path(self, dataset: str) -> str:
        return prepared_folder(self.results, dataset)

    def pretrained_path(self, backbone: str) -> str:
        return f"{self.results}/pretrained/{backbone}"

    def features_path(self, dataset: str, backbone: str) -> str:
        return f"{self.results}/features/{dataset}/{backbone}"

    def run_path(self, run: Run) -> str:
        return f"{self.results}/runs/{run.relpath}"

    # ---- datasets
    def dataset_config(self, name: str) -> dict[str, Any]:
        """The config ``tlbench.datasets.prepare`` takes: loader, loader options, ``source``.

        Loaders of official archives read them from ``<data_mirror>/<loader>``
        unless the dataset sets ``source``; without either they download.
        """
        entry = dict(self.config["datasets"][name])
        entry.pop("image_size")
        entry.pop("seed", None)
        entry.pop(
            "budgets", None
        )  # an axis of the runs (tlbench.datasets.budget), not a loader option
        mirror = self.config["data_mirror"]
        if (
            entry.get("source") is None
            and mirror is not None
            and entry["loader"] in MIRRORED_LOADERS
        ):
            entry["source"] = f"{mirror.rstrip('/')}/{entry['loader']}"
        return entry

    def dataset_image_size(self, name: str) -> int:
        return self.config["datasets"][name]["image_size"]

    def dataset_seed(self, name: str) -> int:
        return self.config["datasets"][name].get("seed", 0)

    def dataset_budgets(self, name: str) -> list[str]:
        """The label budgets (labels, config order) of a dataset; ``['all']`` without any."""
        return list(self.config["datasets"][name].get("budgets", [BUDGET_ALL]))

    @property
    def has_budgets(self) -> bool:
        """Whether some run trains on a label budget other than ``all``."""
        return any(r.budget != BUDGET_ALL for r in self.runs)

    # ---- specs
    def training(self, run: Run) -> dict[str, Any]:
        """Training settings of a run: defaults < training < backbone < strategy < block."""
        strategy = self.config["strategies"][run.strategy]
        block = self.config["matrix"][run.block]
        return {
            **self._backbone_training(run.backbone),
            **strategy.get("training", {}),
            **block.get("training", {}),
        }

    def _backbone_training(self, backbone: str) -> dict[str, Any]:
        training = dict(self.config["training"])
        input_size = self.config["backbones"][backbone].get("input_size")
        if input_size is not None:
            training["input_size"] = input_size
        return training

    def backbone_spec(self, backbone: str) -> dict[str, Any]:
        """The run spec's ``backbone``; pretrained weights point at the pretraining run."""
        cfg = self.config["backbones"][backbone]
        weights = cfg.get("weights", "none")
        if pretrain_config(cfg) is not None:
            weights = {"run": self.pretrained_path(backbone)}
        elif isinstance(weights, dict):  # {random: SEED}
            weights = dict(weights)
        return {"name": cfg["name"], "weights": weights, "kwargs": dict(cfg.get("kwargs", {}))}

    def uses_features(self, run: Run) -> bool:
        """Whether a run reads the (dataset, backbone) feature cache.

        True for strategies with a head-only phase, without augmentation, on
        weights with an identity (pretrained or ``{random: SEED}``; ``none`` is drawn
        from each run's seed and has no identity to cache under),
        whose model input (size, interpolation) is the one the cache is
        computed at.
        """
        strategy = self.config["strategies"][run.strategy]["name"]
        augmentation = self.config["augmentations"][run.augmentation]["name"]
        if strategy not in HEAD_ONLY_STRATEGIES or augmentation != NO_AUGMENTATION:
            return False
        if self.backbone_spec(run.backbone)["weights"] == "none":
            return False
        mine, cache = self.training(run), self._backbone_training(run.backbone)
        return all(mine[k] == cache[k] for k in ("input_size", "interpolation"))

    def feature_pairs(self) -> list[tuple[str, str]]:
        """(dataset, backbone) pairs whose features some run reads."""
        return sorted({(r.dataset, r.backbone) for r in self.runs if self.uses_features(r)})

    def run_spec(self, run: Run) -> dict[str, Any]:
        """The engine's run spec of one run (docs/ARCHITECTURE.md "Run spec")."""
        strategy = self.config["strategies"][run.strategy]
        backbone = self.backbone_spec(run.backbone)
        if strategy["name"] in RANDOM_INIT_STRATEGIES:
            backbone["weights"] = "none"
        spec: dict[str, Any] = {
            "dataset": {"name": run.dataset, "prepared": self.prepared_path(run.dataset)},
            "backbone": backbone,
            "strategy": {"name": strategy["name"], "params": dict(strategy.get("params", {}))},
            "augmentation": self._augmentation_spec(run.augmentation),
            "seed": run.seed,
            "training": self.training(run),
        }
        if (
            run.budget != BUDGET_ALL
        ):  # only then: the specs of budget-less studies stay as they were
            spec["dataset"]["budget"] = budget_value(run.budget)
            # the subset is drawn from the run's seed; named in the spec (a param of the
            # job), so runs drawn the earlier way (the split seed) are redone
            spec["dataset"]["budget_seed"] = run.seed
        if "head" in strategy:
            spec["head"] = dict(strategy["head"])
        if self.uses_features(run):
            spec["features_cache"] = self.features_path(run.dataset, run.backbone)
        if self.pilot:  # only when set: the specs (params) of other studies stay as they were
            spec["pilot"] = True
        return spec

    def pretrain_spec(self, backbone: str) -> dict[str, Any]:
        """Spec of the source run that pretrains ``backbone`` (strategy scratch)."""
        cfg = self.config["backbones"][backbone]
        pretrain = pretrain_config(cfg)
        if pretrain is None:
            raise StudyConfigError(
                f"backbones.{backbone}.weights: {cfg.get('weights')!r} is not a pretraining run"
            )
        own = {"dataset", "seed", "augmentation", "head"}
        spec: dict[str, Any] = {
            "dataset": {
                "name": pretrain["dataset"],
                "prepared": self.prepared_path(pretrain["dataset"]),
            },
            "backbone": {
                "name": cfg["name"],
                "weights": "none",
                "kwargs": dict(cfg.get("kwargs", {})),
            },
            "strategy": {"name": "scratch", "params": {}},
            "augmentation": self._augmentation_spec(pretrain.get("augmentation")),
            "seed": pretrain.get("seed", 0),
            "training": {
                **self._backbone_training(backbone),
                **{k: v for k, v in pretrain.items() if k not in own},
            },
        }
        if "head" in pretrain:
            spec["head"] = dict(pretrain["head"])
        if self.pilot:
            spec["pilot"] = True
        return spec

    def pretrain_names(self, backbone: str) -> dict[str, Any]:
        """Names of a pretraining run, in the shape of :attr:`Run.names`."""
        spec = self.pretrain_spec(backbone)
        pretrain = pretrain_config(self.config["backbones"][backbone]) or {}
        return {
            "dataset": spec["dataset"]["name"],
            "backbone": backbone,
            "strategy": "scratch",
            "augmentation": pretrain.get("augmentation", NO_AUGMENTATION),
            "seed": spec["seed"],
        }

    def features_spec(self, dataset: str, backbone: str) -> dict[str, Any]:
        """Spec of the (dataset, backbone) feature cache: the backbone at its model input."""
        training = self._backbone_training(backbone)
        return {
            "dataset": {"name": dataset, "prepared": self.prepared_path(dataset)},
            "backbone": self.backbone_spec(backbone),
            "training": {k: training[k] for k in ("batch_size", "input_size", "interpolation")},
        }

    # ---- tuning (tlbench.tuning)
    def is_tuned(self, run: Run) -> bool:
        """Whether a run's strategy has a ``tuning`` section (its values come from a search)."""
        return "tuning" in self.config["strategies"][run.strategy]

    def tuning_cells(self) -> list[tuple[str, str, str]]:
        """(dataset, backbone, strategy) of every search: the cells of tuned runs."""
        return sorted({(r.dataset, r.backbone, r.strategy) for r in self.runs if self.is_tuned(r)})

    def tuning_path(self, dataset: str, backbone: str, strategy: str) -> str:
        """Folder of a search's results (``best.json``, ``trials.csv``)."""
        return f"{self.results}/tuning/{dataset}/{backbone}/{strategy}"

    def tuning_workdir(self, dataset: str, backbone: str, strategy: str) -> str:
        """Folder of a search's keras-tuner state (kept when a job fails: resumable)."""
        return f"{self.results}/tuning-work/{dataset}/{backbone}/{strategy}"

    def tuning_section(self, strategy: str) -> dict[str, Any]:
        """The resolved ``tuning`` section of a strategy."""
        return copy.deepcopy(self.config["strategies"][strategy]["tuning"])

    def tuning_spec(self, dataset: str, backbone: str, strategy: str) -> dict[str, Any]:
        """Run spec a search starts from: that of the cell's first run (matrix order);
        its seed is replaced by ``tuning.seed``."""
        for run in self.runs:
            if (run.dataset, run.backbone, run.strategy) == (dataset, backbone, strategy):
                spec = self.run_spec(run)
                spec["seed"] = self.config["strategies"][strategy]["tuning"]["seed"]
                return spec
        raise StudyConfigError(f"no runs of {dataset}/{backbone}/{strategy} in the matrix")

    def _augmentation_spec(self, name: str | None) -> dict[str, Any]:
        if name is None:
            return {"name": NO_AUGMENTATION}
        cfg = self.config["augmentations"][name]
        spec = {"name": cfg["name"]}
        if cfg.get("params"):
            spec["params"] = dict(cfg["params"])
        return spec


def prepared_folder(results: str, dataset: str) -> str:
    """Where a study with results folder ``results`` prepares ``dataset``."""
    return f"{results}/prepared/{dataset}"


def results_folder(config: Mapping[str, Any]) -> str:
    """The results folder of a (raw or resolved) study config, as :attr:`Study.results`
    (``~`` expanded; ``/`` stays ``/``, refused by the study's check)."""
    results = config.get("results") or load_schema()["properties"]["results"]["default"]
    return os.path.expanduser(str(results)).rstrip("/") or "/"
