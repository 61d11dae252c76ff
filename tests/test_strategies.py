"""Strategy "signatures" without training: trainable layers, frozen BN, lr and multipliers."""

from __future__ import annotations

import keras
import pytest

from tlbench.core.errors import SpecError
from tlbench.models.backbones.applications import build_backbone
from tlbench.models.batchnorm import is_batchnorm
from tlbench.strategies.base import STRATEGIES, backbone_layers
from tlbench.training.spec import resolve_spec

ALL = [
    "direct",
    "scratch",
    "feature_extraction",
    "fine_tune",
    "two_phase",
    "freeze_bottom",
    "discriminative_lr",
    "autoencoder",
    "linear_probe",
    "lora",
    "lp_ft",
    "bitfit",
    "norm_only",
    "surgical",
    "l2_sp",
    "bss",
]


@pytest.fixture
def backbone():
    cfg = {"name": "small_cnn", "weights": "none", "kwargs": {"widths": [4, 8, 8]}}
    return build_backbone(cfg, (16, 16, 3))


def make(name, params=None, epochs=6, lr=0.01):
    spec = resolve_spec(
        {
            "dataset": {"prepared": "p"},
            "backbone": {"name": "small_cnn", "weights": "none"},
            "strategy": {"name": name, "params": params or {}},
            "training": {"epochs": epochs, "learning_rate": lr},
        }
    )
    return STRATEGIES.get(name)(spec["strategy"]["params"]), spec


def trainable(backbone):
    return [layer.name for layer in backbone_layers(backbone.model) if layer.trainable]


def weighted(backbone):
    return [layer.name for layer in backbone_layers(backbone.model) if layer.weights]


def test_registry_has_all_strategies():
    assert STRATEGIES.names() == sorted(ALL)


def test_declarations():
    get = STRATEGIES.get
    assert not get("direct").trains and get("scratch").forces_weights == "none"
    assert get("feature_extraction")().bn_inference and get("two_phase")().bn_inference
    assert not get("two_phase")({"batchnorm": "train"}).bn_inference
    assert not get("fine_tune")().bn_inference
    assert get("autoencoder").default_weights == "none"


PRETRAINED = [
    "feature_extraction",
    "fine_tune",
    "two_phase",
    "freeze_bottom",
    "discriminative_lr",
    "lp_ft",
    "bitfit",
    "norm_only",
    "surgical",
    "l2_sp",
    "bss",
]
REQUIRED_PARAMS = {"freeze_bottom": {"frozen": 2}}


@pytest.mark.parametrize("name", PRETRAINED)
def test_batchnorm_policy_defaults_to_frozen(name):
    strategy, _ = make(name, REQUIRED_PARAMS.get(name))
    assert strategy.params["batchnorm"] == "frozen" == strategy.batchnorm


@pytest.mark.parametrize("name", ["scratch", "autoencoder", "direct"])
def test_batchnorm_is_no_parameter_of_random_init_or_direct(name):
    with pytest.raises(SpecError, match="strategy.params.batchnorm: unknown parameter"):
        make(name, {"batchnorm": "frozen"})


@pytest.mark.parametrize("name", PRETRAINED)
def test_batchnorm_policy_is_validated(name):
    params = {**REQUIRED_PARAMS.get(name, {}), "batchnorm": "eval"}
    with pytest.raises(SpecError, match=r"strategy.params.batchnorm: 'eval' is not valid.*frozen"):
        make(name, params)


def test_feature_extraction_cannot_train_batchnorm():
    with pytest.raises(SpecError, match="trains no backbone layer.*valid values: frozen$"):
        make("feature_extraction", {"batchnorm": "train"})


def batchnorm_layers(backbone):
    return [layer for layer in backbone_layers(backbone.model) if is_batchnorm(layer)]


@pytest.mark.parametrize(
    "name, params",
    [
        ("fine_tune", {}),
        ("two_phase", {"unfreeze": "block2"}),
        ("freeze_bottom", {"frozen": "block1"}),
        ("discriminative_lr", {}),
    ],
)
def test_batchnorm_frozen_and_train(backbone, name, params):
    """frozen: no BatchNorm layer trainable in any phase, everything else as the strategy
    says; train: BatchNorm layers train exactly where the layers around them train."""
    frozen, spec = make(name, {**params, "batchnorm": "frozen"})
    trained, _ = make(name, {**params, "batchnorm": "train"})
    phase = frozen.phases(spec)[-1]
    trained.configure(phase, backbone)
    moving = set(trainable(backbone))
    bn = {layer.name for layer in batchnorm_layers(backbone)}
    assert moving & bn  # train: some BatchNorm layers train
    frozen.configure(phase, backbone)
    assert not set(trainable(backbone)) & bn
    assert set(trainable(backbone)) == moving - bn  # nothing else changed
    assert all(not w.trainable for layer in batchnorm_layers(backbone) for w in layer.weights)


def test_direct_has_no_phases():
    strategy, spec = make("direct")
    assert strategy.phases(spec) == []


def test_feature_extraction_freezes_everything(backbone):
    strategy, spec = make("feature_extraction")
    (phase,) = strategy.phases(spec)
    assert phase.head_only and phase.epochs == 6 and phase.learning_rate == 0.01
    assert strategy.configure(phase, backbone) == {}
    assert trainable(backbone) == [] and backbone.model.trainable_weights == []


@pytest.mark.parametrize("name, params", [("scratch", {}), ("fine_tune", {"batchnorm": "train"})])
def test_everything_trainable(backbone, name, params):
    strategy, spec = make(name, params)
    (phase,) = strategy.phases(spec)
    assert not phase.head_only
    assert strategy.configure(phase, backbone) == {}
    assert len(backbone.model.trainable_weights) == len(
        [v for layer in backbone_layers(backbone.model) for v in layer.trainable_weights]
    )
    assert set(weighted(backbone)) <= set(trainable(backbone))


def test_two_phase_count(backbone):
    strategy, spec = make("two_phase", {"unfreeze": 7, "phase2_lr_factor": 0.1})
    p1, p2 = strategy.phases(spec)
    assert (p1.name, p1.epochs, p1.learning_rate, p1.head_only) == ("phase1", 3, 0.01, True)
    assert (p2.name, p2.epochs, p2.head_only) == ("phase2", 3, False)
    assert p2.learning_rate == pytest.approx(0.001)
    strategy.configure(p1, backbone)
    assert trainable(backbone) == []
    strategy.configure(p2, backbone)
    layers = backbone_layers(backbone.model)
    top = layers[-7:]
    assert trainable(backbone) == [layer.name for layer in top if not is_batchnorm(layer)]
    assert any(is_batchnorm(layer) for layer in top)  # BN among them stays frozen (default)
    assert all(not layer.trainable for layer in layers if is_batchnorm(layer))
    strategy, _ = make("two_phase", {"unfreeze": 7, "batchnorm": "train"})
    strategy.configure(p2, backbone)
    assert trainable(backbone) == [layer.name for layer in top]  # BN among them trains


def test_two_phase_block_and_explicit_lr(backbone):
    strategy, spec = make(
        "two_phase",
        {
            "unfreeze": "block3",
            "phase1_epochs": 2,
            "phase2_epochs": 5,
            "phase2_learning_rate": 1e-5,
        },
    )
    p1, p2 = strategy.phases(spec)
    assert (p1.epochs, p2.epochs, p2.learning_rate) == (2, 5, 1e-5)
    strategy.configure(p2, backbone)
    block3 = dict(backbone.blocks)["block3"]
    expected = [n for n in block3 if not is_batchnorm(backbone.model.get_layer(n))]
    assert trainable(backbone) == expected


def test_two_phase_unfreeze_too_deep(backbone):
    strategy, spec = make("two_phase", {"unfreeze": 500})
    depth = len(backbone_layers(backbone.model))
    with pytest.raises(SpecError, match=f"500 exceeds the depth .*{depth} layers"):
        strategy.configure(strategy.phases(spec)[1], backbone)


def test_unknown_block_lists_blocks(backbone):
    strategy, spec = make("two_phase", {"unfreeze": "block9"})
    with pytest.raises(SpecError, match="unknown block 'block9'.*valid blocks: block1, block2"):
        strategy.configure(strategy.phases(spec)[1], backbone)


def test_freeze_bottom(backbone):
    strategy, spec = make("freeze_bottom", {"frozen": 4, "batchnorm": "train"})
    (phase,) = strategy.phases(spec)
    strategy.configure(phase, backbone)
    layers = backbone_layers(backbone.model)
    assert trainable(backbone) == [layer.name for layer in layers[4:]]
    strategy, _ = make("freeze_bottom", {"frozen": "block2", "batchnorm": "train"})
    strategy.configure(phase, backbone)
    frozen = dict(backbone.blocks)["block1"] + dict(backbone.blocks)["block2"]
    assert not set(frozen) & set(trainable(backbone))
    assert set(dict(backbone.blocks)["block3"]) <= set(trainable(backbone))


def test_discriminative_lr_decay(backbone):
    strategy, spec = make("discriminative_lr", {"decay": 0.5, "batchnorm": "train"})
    (phase,) = strategy.phases(spec)
    multipliers = strategy.configure(phase, backbone)
    assert set(weighted(backbone)) <= set(trainable(backbone))
    names = [name for name, _ in backbone.blocks]
    assert names == ["block1", "block2", "block3"]
    kernel = {n: backbone.model.get_layer(f"{n}_conv1").kernel.path for n in names}
    assert multipliers[kernel["block1"]] == 0.25
    assert multipliers[kernel["block2"]] == 0.5
    assert kernel["block3"] not in multipliers  # top block: factor 1
    assert all(
        not v.path.startswith("block3") for v in backbone.model.weights if v.path in multipliers
    )


def test_discriminative_lr_explicit(backbone):
    strategy, spec = make("discriminative_lr", {"multipliers": {"block1": 0.0, "block2": 0.1}})
    multipliers = strategy.configure(strategy.phases(spec)[0], backbone)
    assert multipliers[backbone.model.get_layer("block1_conv1").kernel.path] == 0.0
    assert multipliers[backbone.model.get_layer("block2_conv2").kernel.path] == 0.1
    strategy, spec = make("discriminative_lr", {"multipliers": {"stem": 0.1}})
    with pytest.raises(SpecError, match="multipliers.stem: unknown block"):
        strategy.configure(strategy.phases(spec)[0], backbone)


def test_autoencoder_stages(backbone):
    strategy, spec = make("autoencoder", {"ae_epochs": 2})
    assert strategy.stage_count(backbone) == 3
    strategy.configure_stage(1, backbone)
    assert trainable(backbone) == dict(backbone.blocks)["block2"]
    assert strategy.stage_output_layer(1, backbone) == "block2_pool"
    (phase,) = strategy.phases(spec)
    strategy.configure(phase, backbone)  # the classifier phase trains everything again
    assert set(weighted(backbone)) <= set(trainable(backbone))
    strategy, _ = make("autoencoder", {"stages": 4})
    with pytest.raises(SpecError, match="stages: 4 exceeds the 3 blocks"):
        strategy.stage_count(backbone)


def test_blockless_backbone_is_an_error():
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs), name="backbone")

    class Bare:
        name, blocks = "bare", []

    bare = Bare()
    bare.model = model
    strategy, _ = make("autoencoder")
    with pytest.raises(SpecError, match="declares no blocks"):
        strategy.stage_count(bare)


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("two_phase", {"unfreeze": -1}, "unfreeze: -1 must be >= 0"),
        ("two_phase", {"phase2_lr_factor": 0}, "phase2_lr_factor: 0 must be a number > 0"),
        ("discriminative_lr", {"decay": "fast"}, "decay: 'fast' must be a number > 0"),
        ("autoencoder", {"ae_epochs": 0}, "ae_epochs: 0 must be an integer >= 1"),
        ("fine_tune", {"unfreeze": 3}, "valid parameters: batchnorm"),
        ("scratch", {"unfreeze": 3}, "valid parameters: (none)"),
        ("lp_ft", {"ft_lr_factor": 0}, "ft_lr_factor: 0 must be a number > 0"),
        ("lp_ft", {"ft_learning_rate": "small"}, "ft_learning_rate: 'small' must be a number"),
        ("lp_ft", {"grid": [-1.0]}, "strategy.params.grid"),
        ("lp_ft", {"unfreeze": 3}, "valid parameters: batchnorm, ft_learning_rate, ft_lr_factor"),
        ("bitfit", {"kernels": True}, "valid parameters: batchnorm"),
        ("norm_only", {"batchnorm": "eval"}, "'eval' is not valid for strategy 'norm_only'"),
        ("surgical", {"block": -1}, "block: -1 is neither a block name"),
        ("surgical", {"block": True}, "block: True is neither a block name"),
        ("surgical", {"block": 2, "candidates": [1]}, "candidates: only with block: auto"),
        ("surgical", {"candidates": ["block1", "block1"]}, "candidates: ['block1', 'block1']"),
        ("surgical", {"candidates": []}, "candidates: [] must be a list"),
        ("surgical", {"trial_epochs": 0}, "trial_epochs: 0 must be an integer >= 1"),
        ("l2_sp", {"alpha": 0}, "strategy.params.alpha: 0 must be a number > 0"),
        ("l2_sp", {"beta": -0.1}, "strategy.params.beta: -0.1 must be a number >= 0"),
        ("l2_sp", {"beta": "none"}, "strategy.params.beta: 'none' must be a number >= 0"),
        ("l2_sp", {"eta": 0.1}, "valid parameters: alpha, batchnorm, beta"),
        ("bss", {"eta": -1}, "strategy.params.eta: -1 must be a number > 0"),
        ("bss", {"k": 0}, "strategy.params.k: 0 must be an integer >= 1"),
        ("bss", {"k": 1.5}, "strategy.params.k: 1.5 must be an integer >= 1"),
        ("bss", {"alpha": 0.1}, "valid parameters: batchnorm, eta, k"),
    ],
)
def test_bad_params(name, params, message):
    with pytest.raises(SpecError) as info:
        make(name, params)
    assert message in str(info.value)


def test_direct_mapping_param_is_validated():
    with pytest.raises(SpecError, match=r"strategy\.params\.mapping: unknown mapping 'best'"):
        STRATEGIES.get("direct")({"mapping": "best"})


def test_direct_one_to_one_mapping_resolves_majority_collisions():
    import numpy as np

    from tlbench.strategies.direct import map_classes

    # target 0 and 1 are both mostly predicted as source 2; target 1's runner-up is source 0
    counts = np.array([[0, 1, 9, 0], [4, 0, 6, 0], [0, 0, 1, 7]])
    assert map_classes(counts, "majority") == [2, 2, 3]
    assert map_classes(counts, "one_to_one") == [2, 0, 3]
    # already distinct majorities are kept as they are
    assert map_classes(np.array([[5, 1], [2, 3]]), "one_to_one") == [0, 1]
    with pytest.raises(ValueError, match="at least as many source classes"):
        map_classes(np.array([[3], [2]]), "one_to_one")


@pytest.mark.parametrize("momentum", [0.9, None])
def test_trained_batchnorm_uses_the_spec_momentum(momentum):
    """Keras applications ship BatchNorm momentum 0.999 (MobileNetV2): from random init,
    a few hundred steps leave the inference-mode statistics at their initial values."""
    from tlbench.models.assembly import build_model

    spec = resolve_spec(
        {
            "dataset": {"prepared": "unused"},
            "backbone": {"name": "MobileNetV2", "weights": "none", "kwargs": {"alpha": 0.35}},
            "strategy": {"name": "scratch"},
            "training": {"input_size": 32, "batchnorm_momentum": momentum},
        }
    )
    strategy = STRATEGIES.get("scratch")(spec["strategy"]["params"])
    built = build_model(spec, strategy, (32, 32, 3), 3)
    momenta = {layer.momentum for layer in built.backbone.model.layers if is_batchnorm(layer)}
    assert momenta == ({0.9} if momentum is not None else {0.999})


@pytest.mark.parametrize("policy, expected", [("frozen", {0.999}), ("train", {0.9})])
def test_batchnorm_momentum_applies_only_to_batchnorm_that_trains(policy, expected):
    from tlbench.models.assembly import build_model

    spec = resolve_spec(
        {
            "dataset": {"prepared": "unused"},
            "backbone": {"name": "MobileNetV2", "weights": "none", "kwargs": {"alpha": 0.35}},
            "strategy": {"name": "freeze_bottom", "params": {"frozen": 30, "batchnorm": policy}},
            "training": {"input_size": 32, "batchnorm_momentum": 0.9},
        }
    )
    strategy = STRATEGIES.get("freeze_bottom")(spec["strategy"]["params"])
    built = build_model(spec, strategy, (32, 32, 3), 3)
    bn = [layer for layer in backbone_layers(built.backbone.model) if is_batchnorm(layer)]
    bottom = [layer for layer in backbone_layers(built.backbone.model)[:30] if is_batchnorm(layer)]
    assert bottom and {layer.momentum for layer in bottom} == {0.999}  # frozen part: its own
    top = [layer for layer in bn if layer not in bottom]
    assert {layer.momentum for layer in top} == expected


def test_batchnorm_momentum_is_validated():
    with pytest.raises(SpecError, match="training.batchnorm_momentum"):
        resolve_spec(
            {
                "dataset": {"prepared": "x"},
                "backbone": {"name": "small_cnn", "weights": "none"},
                "strategy": {"name": "scratch"},
                "training": {"batchnorm_momentum": 1.5},
            }
        )


def trainable_variables(backbone):
    return {v.path for v in backbone.model.trainable_weights}


@pytest.mark.parametrize("policy", ["frozen", "train"])
def test_bitfit_and_norm_only_select_variables_not_layers(backbone, policy):
    """bitfit: every bias and BatchNorm beta, nothing else; norm_only: BatchNorm gamma and
    beta, nothing else. The policy decides only whether BatchNorm layers run in inference
    mode (frozen: layer non-trainable, its chosen variables still trainable)."""
    names = {v.path for v in backbone.model.weights}
    bn = {layer.name for layer in batchnorm_layers(backbone)}
    expected = {
        "bitfit": {n for n in names if n.endswith("/bias") or n in {f"{b}/beta" for b in bn}},
        "norm_only": {f"{b}/{v}" for b in bn for v in ("gamma", "beta")},
    }
    for name, variables in expected.items():
        strategy, spec = make(name, {"batchnorm": policy})
        (phase,) = strategy.phases(spec)
        assert strategy.configure(phase, backbone) == {}
        assert variables and trainable_variables(backbone) == variables, name
        assert all(layer.trainable == (policy == "train") for layer in batchnorm_layers(backbone))


def test_lp_ft_fine_tunes_everything_at_its_rate(backbone):
    strategy, spec = make("lp_ft", {"batchnorm": "train"})
    (phase,) = strategy.phases(spec)
    assert (phase.name, phase.epochs, phase.head_only) == ("fine_tune", 6, False)
    assert phase.learning_rate == pytest.approx(0.001)  # 0.01 * ft_lr_factor 0.1
    strategy.configure(phase, backbone)
    assert set(weighted(backbone)) <= set(trainable(backbone))
    strategy, spec = make("lp_ft", {"ft_learning_rate": 3e-5})
    assert strategy.phases(spec)[0].learning_rate == 3e-5
    assert STRATEGIES.get("lp_ft").features_only  # its probe reads the feature cache


def test_surgical_trains_one_block(backbone):
    for block in ("block2", 2):  # blocks: block1 (index 0), block2, block3
        strategy, spec = make("surgical", {"block": block, "batchnorm": "train"})
        strategy.configure(strategy.phases(spec)[0], backbone)
        wanted = "block2" if block == "block2" else "block3"
        assert trainable(backbone) == dict(backbone.blocks)[wanted]
    strategy, spec = make("surgical", {"block": "block2"})  # batchnorm frozen
    strategy.configure(strategy.phases(spec)[0], backbone)
    assert trainable(backbone) == [
        n
        for n in dict(backbone.blocks)["block2"]
        if n not in {b.name for b in batchnorm_layers(backbone)}
    ]
    # auto before its choice: every candidate may train (the build's check)
    strategy, spec = make("surgical", {"candidates": ["block3", 0], "batchnorm": "train"})
    strategy.configure(strategy.phases(spec)[0], backbone)
    blocks = dict(backbone.blocks)
    assert set(trainable(backbone)) == set(blocks["block1"] + blocks["block3"])


@pytest.mark.parametrize(
    "params, message",
    [
        ({"block": 3}, "block index 3 is out of range for backbone 'small_cnn' (3 blocks: "),
        ({"block": "block9"}, "unknown block 'block9'"),
        ({"candidates": ["block1", 7]}, "candidates: block index 7 is out of range"),
    ],
)
def test_surgical_block_not_in_the_backbone(backbone, params, message):
    strategy, spec = make("surgical", params)
    with pytest.raises(SpecError) as info:
        strategy.configure(strategy.phases(spec)[0], backbone)
    assert message in str(info.value)
