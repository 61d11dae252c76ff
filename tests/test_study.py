"""Study config: schema errors name the key, matrix expansion, run specs."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

from tlbench.core.errors import StudyConfigError
from tlbench.study.load import load_study, load_study_file
from tlbench.study.runs import Run

ROOT = Path(__file__).resolve().parents[1]


def base_config() -> dict:
    """A small valid study: a fractal-pretrained CNN and a scratch CNN on digits."""
    return {
        "results": "out",
        "data_mirror": "../mirror",
        "datasets": {
            "digits": {"loader": "digits", "image_size": 16, "train_per_class": 10},
            "fractal": {"loader": "fractal", "image_size": 16, "seed": 3},
            "gtsrb": {"loader": "gtsrb", "image_size": 32, "source": "elsewhere"},
        },
        "backbones": {
            "cnn_fractal": {
                "name": "small_cnn",
                "kwargs": {"widths": [8, 16]},
                "weights": {"pretrain": {"dataset": "fractal", "epochs": 3, "batch_size": 64}},
            },
            "cnn_scratch": {"name": "small_cnn", "kwargs": {"widths": [8, 16]}},
            "mnv2": {"name": "MobileNetV2", "weights": "imagenet", "input_size": 96},
        },
        "strategies": {
            "scratch": {"name": "scratch"},
            "feature_extraction": {"name": "feature_extraction", "head": {"type": "gap_dense"}},
            "fine_tune": {
                "name": "freeze_bottom",
                "params": {"frozen": 2},
                "training": {"learning_rate": 0.0001, "epochs": 4},
            },
        },
        "augmentations": {"none": {"name": "none"}, "flip": {"name": "flip", "params": {"p": 1}}},
        "training": {"epochs": 5},
        "seeds": [0, 1],
        "matrix": [
            {
                "datasets": ["digits"],
                "backbones": ["cnn_fractal", "cnn_scratch"],
                "strategies": ["scratch", "feature_extraction"],
                "augmentations": ["none"],
            },
            {
                "datasets": ["digits"],
                "backbones": ["cnn_fractal"],
                "strategies": ["fine_tune"],
                "augmentations": ["none", "flip"],
                "seeds": [7],
                "training": {"epochs": 9},
            },
        ],
    }


def error_of(config: dict) -> str:
    with pytest.raises(StudyConfigError) as info:
        load_study(config)
    return str(info.value)


def test_expands_blocks_with_their_seeds():
    study = load_study(base_config())
    assert len(study.runs) == 2 * 2 * 2 + 1 * 2 * 1
    assert Run("digits", "cnn_fractal", "fine_tune", "flip", 7, block=1) in study.runs
    assert {r.seed for r in study.runs if r.block == 0} == {0, 1}
    assert study.datasets == ["digits"]
    assert study.pretrained_backbones == ["cnn_fractal"]
    assert study.run("digits", "cnn_fractal", "fine_tune", "flip", "7").block == 1


def test_run_spec_merges_training_in_order():
    study = load_study(base_config())
    run = study.run("digits", "cnn_fractal", "fine_tune", "flip", 7)
    spec = study.run_spec(run)
    # defaults < training < strategy < block
    assert spec["training"]["epochs"] == 9
    assert spec["training"]["learning_rate"] == 0.0001
    assert spec["training"]["batch_size"] == 32
    assert spec["training"]["optimizer"] == "adam"
    assert spec["dataset"] == {"name": "digits", "prepared": "out/prepared/digits"}
    assert spec["backbone"] == {
        "name": "small_cnn",
        "weights": {"run": "out/pretrained/cnn_fractal"},
        "kwargs": {"widths": [8, 16]},
    }
    assert spec["strategy"] == {"name": "freeze_bottom", "params": {"frozen": 2}}
    assert spec["augmentation"] == {"name": "flip", "params": {"p": 1}}
    assert spec["seed"] == 7
    assert "features_cache" not in spec
    assert study.run_path(run) == "out/runs/digits/cnn_fractal/fine_tune/flip/seed7"


def test_feature_cache_only_for_head_only_phases_on_pretrained_weights_without_augmentation():
    study = load_study(base_config())
    frozen = study.run("digits", "cnn_fractal", "feature_extraction", "none", 0)
    spec = study.run_spec(frozen)
    assert spec["features_cache"] == "out/features/digits/cnn_fractal"
    assert spec["head"] == {"type": "gap_dense"}
    # random weights have no identity to cache under
    random = study.run_spec(study.run("digits", "cnn_scratch", "feature_extraction", "none", 0))
    assert "features_cache" not in random
    assert study.feature_pairs() == [("digits", "cnn_fractal")]
    assert study.features_spec("digits", "cnn_fractal") == {
        "dataset": {"name": "digits", "prepared": "out/prepared/digits"},
        "backbone": spec["backbone"],
        "training": {"batch_size": 32, "input_size": None, "interpolation": "bilinear"},
    }
    config = base_config()
    config["strategies"]["two_phase"] = {"name": "two_phase"}
    config["matrix"][1]["strategies"].append("two_phase")
    study = load_study(config)
    assert "features_cache" in study.run_spec(
        study.run("digits", "cnn_fractal", "two_phase", "none", 7)
    )
    assert "features_cache" not in study.run_spec(
        study.run("digits", "cnn_fractal", "two_phase", "flip", 7)
    )
    config = base_config()
    config["matrix"][0]["training"] = {"input_size": 24}
    study = load_study(config)
    assert study.feature_pairs() == []  # the cache is computed at the backbone's own input


def test_backbone_input_size_sits_between_training_and_strategy():
    config = base_config()
    config["matrix"].append(
        {
            "datasets": ["digits"],
            "backbones": ["mnv2"],
            "strategies": ["fine_tune"],
            "augmentations": ["none"],
        }
    )
    study = load_study(config)
    spec = study.run_spec(study.run("digits", "mnv2", "fine_tune", "none", 0))
    assert spec["training"]["input_size"] == 96  # the strategy and block do not set it
    assert spec["backbone"]["weights"] == "imagenet"


def test_scratch_runs_do_not_use_pretrained_weights():
    study = load_study(base_config())
    spec = study.run_spec(study.run("digits", "cnn_fractal", "scratch", "none", 0))
    assert spec["backbone"]["weights"] == "none"


def test_strategy_sets_agree_with_the_registry():
    """The strategies that declare a head-only phase (``head_only_phase``) are those whose
    phases train the head alone; with ``features_only`` they read the feature cache."""
    from tlbench.core.errors import SpecError
    from tlbench.strategies.base import STRATEGIES, Phase
    from tlbench.strategies.phased import FeatureExtraction
    from tlbench.study.matrix import HEAD_ONLY_STRATEGIES, RANDOM_INIT_STRATEGIES

    forced_random = {n for n in STRATEGIES if STRATEGIES.get(n).forces_weights == "none"}
    assert forced_random == RANDOM_INIT_STRATEGIES
    spec = {"training": {"epochs": 2, "learning_rate": 0.1}}
    head_only = set()
    for name in STRATEGIES:
        try:
            phases = STRATEGIES.get(name)().phases(spec)
        except SpecError:  # a strategy with required parameters (freeze_bottom)
            continue
        if STRATEGIES.get(name).features_only or any(
            isinstance(p, Phase) and p.head_only for p in phases
        ):
            head_only.add(name)
    assert head_only == HEAD_ONLY_STRATEGIES
    assert FeatureExtraction.name in HEAD_ONLY_STRATEGIES


def test_pretrain_spec_is_a_scratch_source_run():
    study = load_study(base_config())
    spec = study.pretrain_spec("cnn_fractal")
    assert spec["dataset"] == {"name": "fractal", "prepared": "out/prepared/fractal"}
    assert spec["backbone"]["weights"] == "none"
    assert spec["strategy"]["name"] == "scratch"
    assert spec["training"]["epochs"] == 3
    assert spec["training"]["batch_size"] == 64
    assert spec["seed"] == 0
    assert study.pretrain_names("cnn_fractal")["dataset"] == "fractal"
    with pytest.raises(StudyConfigError, match="cnn_scratch"):
        study.pretrain_spec("cnn_scratch")


def test_dataset_config_resolves_the_mirror():
    study = load_study(base_config())
    assert study.dataset_config("digits") == {"loader": "digits", "train_per_class": 10}
    assert study.dataset_config("gtsrb")["source"] == "elsewhere"
    config = base_config()
    config["datasets"]["bees"] = {"loader": "hymenoptera", "image_size": 96}
    assert load_study(config).dataset_config("bees")["source"] == "../mirror/hymenoptera"
    assert study.dataset_image_size("fractal") == 16
    assert study.dataset_seed("fractal") == 3
    assert study.dataset_seed("digits") == 0


def test_defaults_are_filled():
    config = base_config()
    del config["results"], config["seeds"], config["training"]
    study = load_study(config)
    assert study.results == "results"
    assert study.config["seeds"] == [0]
    assert study.config["training"]["epochs"] == 10
    assert study.config["resources"]["threads"] >= 1
    assert study.config["verdict"] == {
        "margin": 0.01, "reps": 2000, "seed": 0, "cost": "flops_seen"
    }  # fmt: skip
    assert base_config()["training"] == {"epochs": 5}  # the input is not modified


def test_verdict_section_is_checked_and_merged():
    config = base_config()
    config["verdict"] = {"margin": 0.02}
    assert load_study(config).config["verdict"] == {
        "margin": 0.02, "reps": 2000, "seed": 0, "cost": "flops_seen"
    }  # fmt: skip
    config["verdict"] = {"margin": -0.5}
    assert "verdict.margin" in error_of(config)
    config["verdict"] = {"margins": 0.01}
    assert "'margins'" in error_of(config)


def test_unknown_top_level_key_is_named():
    config = base_config()
    config["epochs"] = 3
    message = error_of(config)
    assert "'epochs'" in message and "valid keys" in message and "matrix" in message


def test_unknown_training_key_is_named_with_its_path():
    config = base_config()
    config["matrix"][1]["training"]["epoch"] = 3
    message = error_of(config)
    assert "matrix[1].training" in message and "'epoch'" in message and "epochs" in message


def test_bad_enum_value_lists_allowed_values():
    config = base_config()
    config["training"]["optimizer"] = "adamw"
    message = error_of(config)
    assert "training.optimizer" in message and "'adamw'" in message
    assert "adam, sgd" in message


def test_bad_loader_lists_loaders():
    config = base_config()
    config["datasets"]["digits"]["loader"] = "mnist"
    message = error_of(config)
    assert "datasets.digits.loader" in message and "'mnist'" in message and "fractal" in message


def test_unknown_name_in_matrix_lists_defined_names():
    config = base_config()
    config["matrix"][0]["strategies"] = ["scratch", "finetune"]
    message = error_of(config)
    assert "matrix[0].strategies[1]" in message and "'finetune'" in message
    assert "feature_extraction, fine_tune, scratch" in message


def test_unknown_pretrain_dataset_is_named():
    config = base_config()
    config["backbones"]["cnn_fractal"]["weights"]["pretrain"]["dataset"] = "fractals"
    message = error_of(config)
    assert "backbones.cnn_fractal.weights.pretrain.dataset" in message and "'fractals'" in message


def test_unknown_pretrain_key_is_named():
    config = base_config()
    config["backbones"]["cnn_fractal"]["weights"]["pretrain"]["epoch"] = 3
    message = error_of(config)
    assert "backbones.cnn_fractal.weights.pretrain" in message and "'epoch'" in message


@pytest.mark.parametrize("seeds", [[0, -1], [0, "one"], [1, 1], []])
def test_bad_seeds_are_named(seeds):
    config = base_config()
    config["seeds"] = seeds
    assert "seeds" in error_of(config)


def test_bad_block_seed_is_named():
    config = base_config()
    config["matrix"][1]["seeds"] = [1.5]
    assert "matrix[1].seeds[0]" in error_of(config)


@pytest.mark.parametrize(
    "strategy, params, named",
    [
        (
            "lp_ft",
            {"ft_lr_factor": -1},
            "strategies.newer.params.ft_lr_factor: -1 must be a number > 0",
        ),
        ("surgical", {"block": 1.5}, "strategies.newer.params.block: 1.5 is neither a block name"),
        ("surgical", {"rank": 4}, "strategies.newer.params.rank: unknown parameter of strategy"),
        (
            "norm_only",
            {"batchnorm": "eval"},
            "strategies.newer.params.batchnorm: 'eval' is not valid",
        ),
    ],
)
def test_bad_params_of_the_newer_strategies_are_named_at_parse_time(strategy, params, named):
    config = base_config()
    config["strategies"]["newer"] = {"name": strategy, "params": params}
    config["matrix"][1]["strategies"].append("newer")
    message = error_of(config)
    assert named in message


def test_lp_ft_reads_the_feature_cache_without_augmentation():
    config = base_config()
    config["strategies"]["lp_ft"] = {"name": "lp_ft"}
    config["matrix"][1]["strategies"].append("lp_ft")
    study = load_study(config)
    plain = study.run_spec(study.run("digits", "cnn_fractal", "lp_ft", "none", 7))
    assert plain["features_cache"] == "out/features/digits/cnn_fractal"
    flipped = study.run_spec(study.run("digits", "cnn_fractal", "lp_ft", "flip", 7))
    assert "features_cache" not in flipped


def test_unsafe_section_name_is_rejected():
    config = base_config()
    config["augmentations"]["flip-h"] = {"name": "flip"}
    message = error_of(config)
    assert "augmentations.flip-h" in message and "letters, digits and _" in message


def test_missing_required_key_is_named():
    config = base_config()
    del config["datasets"]["digits"]["image_size"]
    assert "datasets.digits.image_size: missing" in error_of(config)


def test_bad_weights_type_is_named():
    config = base_config()
    config["backbones"]["cnn_scratch"]["weights"] = 3
    message = error_of(config)
    assert "backbones.cnn_scratch.weights" in message and "string" in message


def random_control_config() -> dict:
    """base_config with cnn_random ({random: 0}) in block 0 (scratch, feature_extraction)."""
    config = base_config()
    config["backbones"]["cnn_random"] = {
        "name": "small_cnn",
        "kwargs": {"widths": [8, 16]},
        "weights": {"random": 0},
    }
    config["matrix"][0]["backbones"].append("cnn_random")
    return config


def test_random_weights_are_a_cached_control_not_a_pretraining_run():
    study = load_study(random_control_config())
    assert study.pretrained_backbones == ["cnn_fractal"]
    spec = study.run_spec(study.run("digits", "cnn_random", "feature_extraction", "none", 0))
    assert spec["backbone"]["weights"] == {"random": 0}
    assert spec["features_cache"] == "out/features/digits/cnn_random"
    assert ("digits", "cnn_random") in study.feature_pairs()
    scratch = study.run_spec(study.run("digits", "cnn_random", "scratch", "none", 0))
    assert scratch["backbone"]["weights"] == "none"  # scratch always starts from the run's seed


@pytest.mark.parametrize(
    ("seed", "named"),
    [
        (-1, "backbones.cnn_random.weights.random: -1 is less than the minimum of 0"),
        ("x", "backbones.cnn_random.weights.random: 'x' is not of type 'integer'"),
        (1.5, "backbones.cnn_random.weights.random: 1.5 is not of type 'integer'"),
    ],
)
def test_bad_random_weights_seed_is_named(seed, named):
    config = random_control_config()
    config["backbones"]["cnn_random"]["weights"] = {"random": seed}
    assert named in error_of(config)


def test_random_control_may_be_prescreened():
    config = prescreened_config()
    config["backbones"]["cnn_random"] = random_control_config()["backbones"]["cnn_random"]
    config["matrix"][2]["backbones"] = ["cnn_fractal", "cnn_random"]
    study = load_study(config, check_specs=False)
    assert ("digits", "cnn_random") in study.prescreen_pairs(2)


def test_duplicate_cells_across_blocks_are_named():
    config = base_config()
    config["matrix"].append(
        {
            "datasets": ["digits"],
            "backbones": ["cnn_scratch"],
            "strategies": ["scratch"],
            "augmentations": ["none"],
            "seeds": [1, 2],
        }
    )
    message = error_of(config)
    assert "digits/cnn_scratch/scratch/none/seed1 (blocks 0 and 2)" in message
    assert "seed2" not in message


def test_study_files_load():
    """config.yaml and every configs/**/*.yaml are valid studies."""
    paths = [ROOT / "config.yaml", *sorted(ROOT.glob("configs/**/*.yaml"))]
    paths = [p for p in paths if p.exists()]
    if not paths:
        pytest.skip("no study config files yet")
    for path in paths:
        study = load_study_file(path)
        assert study.runs, path


def test_load_study_file_rejects_non_mapping(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(StudyConfigError, match="mapping"):
        load_study_file(path)


def test_input_config_is_not_modified():
    config = base_config()
    before = copy.deepcopy(config)
    load_study(config)
    assert config == before


def test_environment_page(tmp_path):
    from tlbench.report.pages.environment import environment_page

    study_csv = tmp_path / "study.csv"
    study_csv.write_text(
        "dataset,backbone,strategy,augmentation,seed,env_python,env_keras\n"
        "digits,cnn,scratch,none,0,3.11.7,3.15.1\n"
        "digits,cnn,scratch,none,1,3.11.7,3.15.1\n"
    )
    study = load_study(base_config())
    yaml_path, html_path = tmp_path / "env.yaml", tmp_path / "env.html"
    environment_page(study.config, study_csv, yaml_path, html_path)
    data = yaml.safe_load(yaml_path.read_text())
    assert data["config"]["results"] == "out"
    assert data["environment"]["python"]
    assert data["run_environments"] == [{"python": "3.11.7", "keras": "3.15.1", "runs": 2}]
    page = html_path.read_text()
    assert "3.15.1" in page and "cnn_fractal" in page and "git_commit" in page


def test_log_to_captures_output_and_tracebacks(tmp_path):
    from tlbench.workflow.jobs import log_to

    log = tmp_path / "logs" / "job.log"
    with pytest.raises(RuntimeError), log_to(log):
        print("hello from the job")
        os.write(2, b"native stderr\n")
        raise RuntimeError("boom")
    text = log.read_text()
    assert "hello from the job" in text and "native stderr" in text
    assert "RuntimeError: boom" in text


def test_typed_cli_values():
    from tlbench.study.load import typed_cli_values

    given = {
        "seeds": ["0", "1"],
        "results": "out",
        "epochs": 3,
        "training": {"learning_rate": "1e-3", "optimizer": "sgd", "early_stopping": "null"},
        "data_mirror": "../shared/datasets",
    }
    assert typed_cli_values(given) == {
        "seeds": [0, 1],
        "results": "out",
        "epochs": 3,
        "training": {"learning_rate": 0.001, "optimizer": "sgd", "early_stopping": None},
        "data_mirror": "../shared/datasets",
    }


def test_pilot_study_marks_every_spec_and_leaves_other_studies_unchanged():
    from tlbench.core.errors import SpecError
    from tlbench.study.load import typed_cli_values
    from tlbench.training.spec import resolve_spec

    plain = load_study(base_config())
    assert plain.pilot is False and plain.ledger_path == "out/test_evaluations.jsonl"
    assert "pilot" not in plain.run_spec(plain.runs[0])  # params of evaluated studies unchanged
    assert "pilot" not in plain.pretrain_spec("cnn_fractal")
    # `--config pilot=true` arrives from Snakemake as the string "true"
    config = {**base_config(), **typed_cli_values({"pilot": "true", "results": "true_out"})}
    assert config["pilot"] is True and config["results"] == "true_out"
    pilot = load_study(config)
    assert pilot.pilot is True
    assert all(pilot.run_spec(run)["pilot"] is True for run in pilot.runs)
    assert pilot.pretrain_spec("cnn_fractal")["pilot"] is True
    assert "pilot: 'yes' is not of type 'boolean'" in error_of({**base_config(), "pilot": "yes"})
    spec = {"dataset": {"prepared": "p"}, "backbone": {"name": "small_cnn"},
            "strategy": {"name": "scratch"}, "pilot": "yes"}  # fmt: skip
    with pytest.raises(SpecError, match="pilot: 'yes' must be true or false"):
        resolve_spec(spec)


def prescreened_config(**prescreen) -> dict:
    """base_config with a third block: two pretrained backbones on two datasets, prescreened."""
    config = base_config()
    config["matrix"].append(
        {
            "datasets": ["digits", "gtsrb"],
            "backbones": ["cnn_fractal", "mnv2"],
            "strategies": ["feature_extraction"],
            "augmentations": ["none"],
            "seeds": [3, 4],
            "prescreen": prescreen or {"score": "logme", "keep": 1},
        }
    )
    return config


def test_prescreened_block_runs_only_its_kept_backbones():
    study = load_study(prescreened_config(), check_specs=False)
    assert study.prescreened_blocks == [2]
    assert study.prescreen(2) == {"score": "logme", "keep": 1} and study.prescreen(0) is None
    assert study.prescreen_pairs(2) == [
        ("digits", "cnn_fractal"),
        ("digits", "mnv2"),
        ("gtsrb", "cnn_fractal"),
        ("gtsrb", "mnv2"),
    ]
    assert {r.block for r in study.unscreened_runs} == {0, 1}
    assert len(study.unscreened_runs) == len(study.runs) - 2 * 2 * 2
    kept = study.screened_runs(2, {"digits": ["mnv2"], "gtsrb": ["cnn_fractal"]})
    assert sorted((r.dataset, r.backbone, r.seed) for r in kept) == [
        ("digits", "mnv2", 3),
        ("digits", "mnv2", 4),
        ("gtsrb", "cnn_fractal", 3),
        ("gtsrb", "cnn_fractal", 4),
    ]
    assert all(r.block == 2 for r in kept)
    assert study.prescreen_table(2) == "out/tables/prescreen_block2"


@pytest.mark.parametrize(
    ("prescreen", "named"),
    [
        ({"score": "logmee", "keep": 1}, "matrix[2].prescreen.score: 'logmee' is not a"),
        ({"score": "logme", "keep": 3}, "matrix[2].prescreen.keep: 3 is more than the block's 2"),
        ({"score": "logme", "keep": 0}, "matrix[2].prescreen.keep: 0 is less than the minimum"),
        ({"score": "logme", "keep": "2"}, "matrix[2].prescreen.keep: '2' is not of type"),
        ({"score": "logme"}, "matrix[2].prescreen.keep: missing (required)"),
        ({"score": "logme", "keep": 1, "top": 2}, "matrix[2].prescreen: unknown key(s) 'top'"),
    ],
)
def test_bad_prescreen_is_named(prescreen, named):
    assert named in error_of(prescreened_config(**prescreen))


def test_prescreen_of_a_random_backbone_is_named():
    config = prescreened_config()
    config["matrix"][2]["backbones"] = ["cnn_fractal", "cnn_scratch"]
    message = error_of(config)
    assert "matrix[2].backbones[1]: 'cnn_scratch' has random weights" in message
