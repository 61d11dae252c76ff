"""Run spec: defaults, validation messages, name checks."""

from __future__ import annotations

import pytest

from tlbench.core.errors import SpecError
from tlbench.training.spec import resolve_spec

BASE = {
    "dataset": {"prepared": "prep"},
    "backbone": {"name": "small_cnn", "weights": "none"},
    "strategy": {"name": "fine_tune"},
}


def spec_with(**changes):
    spec = {k: dict(v) for k, v in BASE.items()}
    for key, value in changes.items():
        spec[key] = value
    return spec


def test_defaults_are_filled():
    resolved = resolve_spec(BASE)
    assert resolved["training"]["optimizer"] == "adam"
    assert resolved["training"]["epochs"] == 10
    assert resolved["training"]["early_stopping"] == {"patience": 3, "monitor": "val_accuracy"}
    assert resolved["head"] == {"type": "gap_dense", "hidden": [], "dropout": 0.2}
    assert resolved["augmentation"] == {"name": "none", "params": {}}
    assert resolved["seed"] == 0 and resolved["features_cache"] is None
    assert resolved["strategy"]["params"] == {"batchnorm": "frozen"}


def test_mlp_head_default_hidden():
    resolved = resolve_spec(spec_with(head={"type": "mlp"}))
    assert resolved["head"]["hidden"] == [512, 256, 128]


def test_yaml_file(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(
        "dataset: {prepared: prep}\nbackbone: {name: small_cnn, weights: none}\n"
        "strategy: {name: two_phase, params: {unfreeze: block2}}\ntraining: {epochs: 4}\n"
    )
    resolved = resolve_spec(path)
    assert resolved["strategy"]["params"]["unfreeze"] == "block2"
    assert resolved["strategy"]["params"]["phase2_lr_factor"] == 0.1
    assert resolved["training"]["epochs"] == 4


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"trainig": {}}, "trainig: unknown key; valid keys: dataset, backbone"),
        ({"training": {"lr": 0.1}}, "training.lr: unknown key; valid keys of training: optimizer"),
        (
            {"training": {"early_stopping": {"patiense": 2}}},
            "training.early_stopping.patiense: unknown key",
        ),
        (
            {"training": {"learning_rate": -0.1}},
            "training.learning_rate: -0.1 must be a number > 0",
        ),
        ({"training": {"epochs": 0}}, "training.epochs: 0 must be an integer >= 1"),
        ({"training": {"batch_size": 0}}, "training.batch_size: 0 must be an integer >= 1"),
        ({"training": {"optimizer": "rmsprop"}}, "training.optimizer: 'rmsprop' is not valid"),
        ({"training": {"schedule": {"name": "cosine"}}}, "valid values: constant, exponential"),
        (
            {"training": {"schedule": {"name": "step", "gamma": 0.5, "decay_rate": 2}}},
            "training.schedule.decay_rate: unknown key",
        ),
        ({"training": {"input_size": 4}}, "training.input_size: 4 must be null"),
        ({"head": {"dropout": 1.0}}, "head.dropout: 1.0 must be a number in [0, 1)"),
        ({"head": {"type": "gap_dense", "hidden": [4]}}, "head.hidden: [4] must be empty"),
        ({"strategy": {"name": "fine_tuning"}}, "strategy.name: unknown strategy 'fine_tuning'"),
        ({"augmentation": {"name": "flipp"}}, "augmentation.name: unknown augmentation 'flipp'"),
        ({"backbone": {"name": "ResNet5"}}, "backbone.name: unknown backbone 'ResNet5'"),
        (
            {"strategy": {"name": "two_phase", "params": {"unfreez": 3}}},
            "strategy.params.unfreez: unknown parameter of strategy 'two_phase'",
        ),
        (
            {"strategy": {"name": "freeze_bottom"}},
            "strategy.params.frozen: strategy 'freeze_bottom' needs this parameter",
        ),
        ({"dataset": {}}, "dataset.prepared: required key is missing"),
        ({"seed": -1}, "seed: -1 must be an integer >= 0"),
        ({"backbone": {"name": "small_cnn", "weights": {"path": "x"}}}, "backbone.weights:"),
    ],
)
def test_errors_name_key_and_value(changes, message):
    with pytest.raises(SpecError) as info:
        resolve_spec(spec_with(**changes))
    assert message in str(info.value)


def test_unknown_strategy_lists_valid_names():
    with pytest.raises(SpecError) as info:
        resolve_spec(spec_with(strategy={"name": "nope"}))
    for name in ("autoencoder", "direct", "discriminative_lr", "two_phase"):
        assert name in str(info.value)


def test_autoencoder_starts_from_random_weights_unless_told():
    spec = spec_with(strategy={"name": "autoencoder"}, backbone={"name": "small_cnn"})
    assert resolve_spec(spec)["backbone"]["weights"] == "none"
    other = spec_with(strategy={"name": "fine_tune"}, backbone={"name": "small_cnn"})
    assert resolve_spec(other)["backbone"]["weights"] == "imagenet"  # the spec default
    told = spec_with(
        strategy={"name": "autoencoder"}, backbone={"name": "small_cnn", "weights": "w.h5"}
    )
    assert resolve_spec(told)["backbone"]["weights"] == "w.h5"
    told["backbone"]["weights"] = "imagenet"
    assert resolve_spec(told)["backbone"]["weights"] == "imagenet"


def test_scratch_forces_random_weights():
    resolved = resolve_spec(
        spec_with(strategy={"name": "scratch"}, backbone={"name": "small_cnn", "weights": "x.h5"})
    )
    assert resolved["backbone"]["weights"] == "none"


@pytest.mark.parametrize("seed", [-1, "x", 1.5, True, 2**32, None])
def test_bad_random_weights_seed_is_named(seed):
    spec = spec_with(backbone={"name": "small_cnn", "weights": {"random": seed}})
    with pytest.raises(SpecError) as info:
        resolve_spec(spec)
    assert f"backbone.weights.random: {seed!r} is not a valid random-init seed" in str(info.value)


def test_random_weights_resolve_to_their_seed():
    spec = spec_with(backbone={"name": "small_cnn", "weights": {"random": 7}})
    assert resolve_spec(spec)["backbone"]["weights"] == {"random": 7}
    with pytest.raises(SpecError, match=r"\{random: SEED\}"):
        resolve_spec(spec_with(backbone={"name": "small_cnn", "weights": {"random": 1, "x": 2}}))


def test_run_names_are_kept():
    resolved = resolve_spec(spec_with(run={"dataset": "d", "seed": 1}))
    assert resolved["run"] == {"dataset": "d", "seed": 1}
