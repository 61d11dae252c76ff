"""Which runs share a packed SLURM job (tlbench.study.packing, docs/slurm.md "Packed jobs"):
those that train no backbone; every other run stays a job of its own."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from tlbench.study.load import load_study
from tlbench.study.packing import CHEAP_RUNS, run_group, trains_no_backbone

ROOT = Path(__file__).resolve().parents[1]
PACKED = yaml.safe_load((ROOT / "configs/test/slurm_packed.yaml").read_text())


def _study(strategy: dict, weights="{random: 0}", augmentation="none"):
    config = copy.deepcopy(PACKED)
    config["backbones"]["cnn"]["weights"] = yaml.safe_load(weights)
    config["strategies"] = {"s": strategy}
    config["augmentations"] = {"a": {"name": augmentation}}
    config["matrix"] = [
        {
            "datasets": ["target"],
            "backbones": ["cnn"],
            "strategies": ["s"],
            "augmentations": ["a"],
            "seeds": [0],
        }
    ]
    study = load_study(config, check_specs=False)
    (run,) = study.runs
    return study, run


@pytest.mark.parametrize(
    ("strategy", "weights", "augmentation", "cheap"),
    [
        ({"name": "feature_extraction"}, "{random: 0}", "none", True),  # head on cached features
        ({"name": "linear_probe"}, "{random: 0}", "none", True),
        ({"name": "direct"}, "imagenet", "none", True),  # no gradient step
        ({"name": "feature_extraction"}, "{random: 0}", "flip", False),  # backbone every epoch
        ({"name": "feature_extraction"}, "none", "none", False),  # no cache: no identity
        ({"name": "two_phase", "params": {"unfreeze": 2}}, "{random: 0}", "none", False),
        ({"name": "fine_tune"}, "{random: 0}", "none", False),
        ({"name": "scratch"}, "{random: 0}", "none", False),
    ],
)
def test_only_runs_that_train_no_backbone_are_packed(strategy, weights, augmentation, cheap):
    study, run = _study(strategy, weights, augmentation)
    assert trains_no_backbone(study, run) is cheap
    assert run_group(study, run) == (CHEAP_RUNS if cheap else None)


def test_packed_test_study_has_24_cheap_and_2_expensive_runs():
    """The study of tests/test_slurm.py's packed-jobs test is what the issue asks for."""
    study = load_study(PACKED, check_specs=False)
    cheap = [r for r in study.runs if trains_no_backbone(study, r)]
    assert len(cheap) == 24 and len(study.runs) - len(cheap) == 2
