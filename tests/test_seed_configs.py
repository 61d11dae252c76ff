"""Study configs: every config under configs/ loads, and every run spec it expands to resolves.

The seed-study configs (configs/seedNNN_*.yaml and their small CI variants in
configs/test/) are also checked against the seed reference data: the same
strategies as the seed's experiments, the seed's hyperparameters, official
sources for the full configs and the local mirror for the variants.
(`snakemake -n` over every config is tests/test_workflow.py::test_dry_run.)
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from tlbench.datasets.base import resolve_options
from tlbench.models.augment import AUGMENTATIONS
from tlbench.report import seed_reference
from tlbench.study.load import load_study_file
from tlbench.training.spec import resolve_spec

ROOT = Path(__file__).resolve().parents[1]
ALL_CONFIGS = sorted(ROOT.glob("configs/**/*.yaml")) + [ROOT / "config.yaml"]
SEED_CONFIGS = {
    "000": "seed000_gtsrb.yaml",
    "001": "seed001_oregon_wildlife.yaml",
    "002": "seed002_hymenoptera.yaml",
    "003": "seed003_pets.yaml",
    "004": "seed004_pets_autoencoder.yaml",
}


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _strategy_names(study) -> set[str]:
    """The tlbench strategy names the study's runs use."""
    return {study.config["strategies"][run.strategy]["name"] for run in study.runs}


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=_id)
def test_config_loads_and_every_run_spec_resolves(path):
    study = load_study_file(path)
    assert study.runs
    for run in study.runs:
        resolved = resolve_spec(study.run_spec(run))  # strategy params, head, names
        aug = resolved["augmentation"]
        assert AUGMENTATIONS.get(aug["name"])(aug["params"]) is not None  # preset params
    for backbone in study.pretrained_backbones:
        resolve_spec(study.pretrain_spec(backbone))
    for dataset in study.config["datasets"]:
        loader, _ = resolve_options(study.dataset_config(dataset))  # loader options
        assert loader == study.config["datasets"][dataset]["loader"]


@pytest.mark.parametrize("seed", sorted(SEED_CONFIGS))
def test_seed_configs_use_the_seed_strategies(seed):
    expected = {strategy for _, strategy in seed_reference.strategy_map(seed)}
    full = load_study_file(ROOT / "configs" / SEED_CONFIGS[seed])
    variant = load_study_file(ROOT / "configs" / "test" / SEED_CONFIGS[seed])
    assert _strategy_names(full) == expected
    # the offline variant has no ImageNet classifier (top) weights for `direct`
    assert _strategy_names(variant) == expected - {"direct"}
    assert full.config["data_mirror"] is None
    assert variant.config["data_mirror"] == "../shared/datasets"
    assert len(variant.runs) <= len(full.runs)
    for run in variant.runs:
        training = variant.training(run)
        assert training["epochs"] <= 3
    for name in (full.results, variant.results):
        assert name.startswith("results/")  # inside the git-ignored results/ folder


def test_seed000_config_hyperparameters():
    study = load_study_file(ROOT / "configs" / SEED_CONFIGS["000"])
    hp = seed_reference.load("000")["hyperparameters"]
    sizes = set()
    for run in study.runs:
        spec = resolve_spec(study.run_spec(run))
        training = spec["training"]
        assert training["optimizer"] == hp["optimizer"]
        assert training["learning_rate"] == hp["learning_rate"]
        assert training["batch_size"] == hp["batch_size"]
        assert training["epochs"] == hp["epochs"]
        assert training["interpolation"] == hp["interpolation"]
        sizes.add(training["input_size"])
        if spec["strategy"]["name"] in ("feature_extraction", "fine_tune"):
            hidden = spec["head"]["hidden"]
            assert hidden == ([512, 256, 128] if training["input_size"] == 32 else [1024, 256])
        if spec["backbone"]["name"] == "NASNetMobile" and spec["strategy"]["name"] != "scratch":
            assert spec["backbone"]["weights"] == "imagenet"
    assert sizes == set(hp["input_size"])


def test_seed001_config_two_phase_grid():
    study = load_study_file(ROOT / "configs" / SEED_CONFIGS["001"])
    hp = seed_reference.load("001")["hyperparameters"]
    grid = set()
    for run in study.runs:
        spec = resolve_spec(study.run_spec(run))
        training = spec["training"]
        assert training["learning_rate"] == hp["schedule"]["initial_lrate"]
        schedule = training["schedule"]
        assert schedule["name"] == "exponential"
        assert math.isclose(schedule["decay_rate"], math.exp(-hp["schedule"]["k"]))
        assert spec["augmentation"]["name"] == "seed001"
        params = spec["strategy"]["params"]
        if spec["strategy"]["name"] == "two_phase":
            assert (params["phase1_epochs"], params["phase2_epochs"]) == (25, 20)
            assert training["epochs"] == hp["two_phase"]["total_epochs"]
            grid.add((params["phase2_learning_rate"], params["unfreeze"]))
        else:
            assert training["epochs"] == hp["epochs"]
    table = seed_reference.table("001", "fine_tuning_grid")
    layers = {"-20": 20, "-10": 10, "all": "stem"}  # `stem`: that block and all above = all
    assert grid == {
        (lr, layers[str(n)]) for lr, n in zip(table["lr"], table["layers"], strict=True)
    }


def test_seed002_to_004_config_hyperparameters():
    study = load_study_file(ROOT / "configs" / SEED_CONFIGS["002"])
    hp = seed_reference.load("002")["hyperparameters"]
    for run in study.runs:
        training = study.training(run)
        assert training["optimizer"] == hp["optimizer"]
        assert (training["batch_size"], training["epochs"]) == (hp["batch_size"], hp["epochs"])
        assert training["schedule"] == {"name": "step", "step_epochs": 7, "gamma": 0.1}
    assert {b["name"] for b in study.config["backbones"].values()} == {"VGG16", "alexnet"}

    pets = load_study_file(ROOT / "configs" / SEED_CONFIGS["003"])
    cells = {(r.strategy, r.augmentation) for r in pets.runs}
    assert ("bn_gap_dropout_lr3e4", "seed003") in cells  # the seed's "with augmentation"
    assert ("bn_gap_dropout", "none") in cells  # the seed's "without augmentation"
    lrs = {pets.training(r)["learning_rate"] for r in pets.runs}
    assert lrs == {0.001, 0.0003}

    ae = load_study_file(ROOT / "configs" / SEED_CONFIGS["004"])
    for run in ae.runs:
        spec = resolve_spec(ae.run_spec(run))
        assert spec["backbone"]["name"] == "seed003_cnn"
        if spec["strategy"]["name"] == "autoencoder":
            stages = seed_reference.table("004", "autoencoder_results")
            assert spec["strategy"]["params"]["stages"] == len(stages)
            assert spec["strategy"]["params"]["ae_epochs"] == int(stages["Epochs"].iloc[0])


@pytest.mark.parametrize("seed", sorted(SEED_CONFIGS))
def test_seed_configs_comment_their_seed_sections(seed):
    """Each full config names the seed sections (Russian headings) its choices come from."""
    text = (ROOT / "configs" / SEED_CONFIGS[seed]).read_text(encoding="utf-8")
    assert yaml.safe_load(text)  # parses
    assert "«" in text and "docs/seeds.md" in text
    assert f"seed_reference/seed{seed}.yaml" in text


MEASURED = sorted(ROOT.glob("configs/measured/seed*.yaml"))


@pytest.mark.parametrize("path", MEASURED, ids=_id)
def test_measured_seed_configs_name_their_seed_and_substitutions(path):
    """configs/measured/seedNNN_*.yaml: run on ../shared, a results-page section each."""
    study = load_study_file(path)
    block = study.seed_study
    assert block is not None, f"{path.name} has no seed_study block"
    assert path.name.startswith(f"seed{block['reference']}_")
    assert block["substitutions"], "the substitutions forced by this machine must be listed"
    assert study.config["data_mirror"] == "../shared/datasets"
    if len(study.config["seeds"]) < 3:  # allowed only when the substitutions say why
        assert any(
            f"{len(study.config['seeds'])} seed instead of 3" in s for s in block["substitutions"]
        )
    assert study.results == f"results/seed{block['reference']}"


def test_every_seed_has_a_measured_config():
    assert sorted(p.name[4:7] for p in MEASURED) == list(seed_reference.SEED_IDS)


def test_seed000_scratch_recipe_is_told_as_it_was_chosen():
    """Issue 36: seed 000's scratch recipe was picked among single-run pilots scored on
    test accuracy (commits fe7f08e, e87775a, 2495a5b, e26ceb1), before the test split
    was sealed. Both seed-000 configs and the measured study's substitutions say so, and
    neither calls that choice a validation one or one "set by CPU time"."""
    measured = (ROOT / "configs/measured/seed000_gtsrb.yaml").read_text()
    pilot = (ROOT / "configs/pilots/seed000_gtsrb.yaml").read_text()
    for text in (measured, pilot):
        assert "fe7f08e" in text and "TEST accuracy" in text
    assert "the scratch recipe) are\n# set by CPU time" not in pilot
    assert "re-chosen by this study's own validation" not in measured
    block = yaml.safe_load(measured)["seed_study"]
    substitutions = " ".join(block["substitutions"])
    assert "scored on test accuracy before the test split was sealed" in substitutions
    # the figures that made the choice, in both configs and on the page's substitutions
    for text in (measured, pilot, substitutions):
        for figure in ("fe7f08e", "0.981 test", "0.9801", "0.9812", "0.9846"):
            assert figure in text, (figure, text[:200])
    assert "picked on TEST accuracy, not on validation" in substitutions
    assert "validation figures, where recorded" not in measured
    # and in the section's count of looks at GTSRB's test split: the twelve pilots of
    # the recipe at least, named by their commits
    earlier = block["earlier_test_looks"]["gtsrb"]
    assert earlier["count"] >= 12
    for commit in ("fe7f08e", "e87775a", "2495a5b", "e26ceb1"):
        assert commit in earlier["note"]


def test_seed000_page_shows_the_test_scored_recipe_in_substitutions_and_looks(
    tmp_path, tiny_prepared
):
    """Issue 36 (a): the seed-000 section, made from the measured config's seed_study
    block, says under its substitutions that the recipe was picked on test, and its count
    of looks at GTSRB's test split adds the earlier, test-scored pilots and names them."""
    from test_results import _gtsrb_study

    from tlbench.analysis import ledger, lookcount
    from tlbench.report.pages import results, seeds

    block = yaml.safe_load((ROOT / "configs/measured/seed000_gtsrb.yaml").read_text())
    study = {**block["seed_study"], "config": "c", "results": str(tmp_path)}
    earlier = study["earlier_test_looks"]["gtsrb"]["count"]
    for seed in range(7):  # the measured study's own seven looks
        ledger.append(ledger.ledger_path(tmp_path), {
            "dataset": "gtsrb", "prepared_fingerprint": "f", "spec_hash": str(seed),
            "time_utc": "t", "code": {}})  # fmt: skip
    looks = lookcount.count_looks(ledger.ledger_path(tmp_path), {"gtsrb": tiny_prepared})
    blocks, summary = seeds.seed_section(_gtsrb_study(), study, looks=looks)
    text = results.to_markdown(blocks)
    assert "gtsrb: 7 distinct run specs (7 evaluations; 7 of the run specs by this study" in text
    assert f"plus {earlier} earlier looks that no ledger holds (single-run pilots" in text
    assert f"{7 + earlier} in all" in text and "fe7f08e" in text.split("Substitutions")[0]
    assert "picked on TEST accuracy" in text.split("Substitutions")[1]
    assert summary["test_evaluations"] == {"gtsrb": 7 + earlier}
