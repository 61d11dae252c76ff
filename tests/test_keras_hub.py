"""keras-hub backbones by preset (issue 32, item 4) and the ``lora`` strategy.

Tiny random-weight ViT and DINOv2 backbones are saved as keras-hub presets (backbone
and image converter) to a local folder and loaded through the call a user's preset name
makes (``Backbone.from_preset``), then run through ``feature_extraction``, ``two_phase``
(unfreezing whole transformer blocks), ``lora`` and ``linear_probe`` on a small synthetic
task (16 px, a few epochs; seconds each).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")

from tlbench.analysis.transferability.cache import score_cache  # noqa: E402
from tlbench.core.errors import SpecError, StudyConfigError  # noqa: E402
from tlbench.datasets import make_tiny_prepared  # noqa: E402
from tlbench.models.backbones.applications import build_backbone  # noqa: E402
from tlbench.models.backbones.base import Backbone  # noqa: E402
from tlbench.models.backbones.hub import PresetBackbone  # noqa: E402
from tlbench.models.backbones.hub_presets import check_preset, preset_identity  # noqa: E402
from tlbench.models.preprocess import Preprocess  # noqa: E402
from tlbench.strategies.base import STRATEGIES  # noqa: E402
from tlbench.strategies.lora import adapted_layers  # noqa: E402
from tlbench.study.config import validate_config  # noqa: E402
from tlbench.study.load import load_study  # noqa: E402
from tlbench.training import engine, trainer  # noqa: E402
from tlbench.training.spec import resolve_spec  # noqa: E402

SIZE = 16
CLASSES = 4
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TRAINING = {
    "epochs": 6,
    "batch_size": 16,
    "learning_rate": 0.01,
    "input_size": SIZE,
    "early_stopping": {"patience": 6, "monitor": "val_loss"},
}
#: What each strategy runs with on the tiny presets.
STRATEGY_PARAMS = {
    "feature_extraction": {},
    "two_phase": {"unfreeze": 1, "phase1_epochs": 3, "phase2_epochs": 3},
    "lora": {"rank": 2},
    "linear_probe": {},
}
LEARNS = 0.9
NEAR_CHANCE = 0.5  # chance is 1 / 4


def save_vit(folder: Path) -> Path:
    keras.utils.set_random_seed(1)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(SIZE, SIZE, 3), patch_size=4, num_layers=2, num_heads=2,
        hidden_dim=16, mlp_dim=32,
    )  # fmt: skip
    backbone.save_to_preset(str(folder))
    keras_hub.layers.ViTImageConverter(
        image_size=(SIZE, SIZE), scale=1 / 127.5, offset=-1.0
    ).save_to_preset(str(folder))
    return folder


def save_dinov2(folder: Path) -> Path:
    keras.utils.set_random_seed(2)
    backbone = keras_hub.models.DINOV2Backbone(
        patch_size=4, num_layers=3, hidden_dim=16, num_heads=2, intermediate_dim=32,
        layer_scale_init_value=1.0, num_register_tokens=0, use_swiglu_ffn=False,
        image_shape=(SIZE, SIZE, 3), position_embedding_shape=(SIZE, SIZE),
    )  # fmt: skip
    backbone.save_to_preset(str(folder))
    keras_hub.layers.DINOV2ImageConverter(
        image_size=(SIZE, SIZE),
        scale=[1 / (255 * s) for s in STD],
        offset=[-m / s for m, s in zip(MEAN, STD, strict=True)],
    ).save_to_preset(str(folder))
    return folder


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hub")


@pytest.fixture(scope="module")
def presets(hub_dir) -> dict[str, str]:
    return {
        "vit": str(save_vit(hub_dir / "vit_tiny")),
        "dinov2": str(save_dinov2(hub_dir / "dinov2_tiny")),
    }


@pytest.fixture(scope="module")
def target(hub_dir) -> Path:
    return make_tiny_prepared(hub_dir / "target", num_classes=CLASSES, size=SIZE, per_class=30)


@pytest.fixture(scope="module")
def shuffled(hub_dir, target) -> Path:
    out = hub_dir / "target_shuffled"
    shutil.copytree(target, out)
    y = np.load(out / "train_y.npy")
    np.save(out / "train_y.npy", np.random.default_rng(1).permutation(y))
    return out


def spec_of(prepared: Path, preset: str, strategy: str, params: dict, **extra) -> dict:
    return {
        "dataset": {"prepared": str(prepared)},
        "backbone": {"preset": preset},
        "strategy": {"name": strategy, "params": params},
        "training": dict(TRAINING),
        **extra,
    }


class Snapshots:
    """The backbone's variables (by path) before and after every fit of a run."""

    def __init__(self):
        self.before: dict[str, np.ndarray] = {}
        self.after: dict[str, dict[str, np.ndarray]] = {}
        self.head_before: list[np.ndarray] = []
        self.head_after: list[np.ndarray] = []
        self.trainable: dict[str, list[str]] = {}

    def wrap(self, fit):
        snaps = self

        def wrapped(trainer_, model, phase, *args, **kwargs):
            inner = {layer.name: layer for layer in model.layers}
            if "backbone" in inner and not snaps.before:
                snaps.before = {v.path: np.array(v) for v in inner["backbone"].weights}
                snaps.head_before = [np.array(w) for w in inner["head"].get_weights()]
            fit(trainer_, model, phase, *args, **kwargs)
            if "backbone" in inner:
                backbone = inner["backbone"]
                snaps.after[phase.name] = {v.path: np.array(v) for v in backbone.weights}
                snaps.trainable[phase.name] = [v.path for v in backbone.trainable_weights]
                snaps.head_after = [np.array(w) for w in inner["head"].get_weights()]

        return wrapped


class Runs:
    """Each (preset family, strategy, labels) run, trained on first use (so that ``-k``
    selects only the runs its tests read)."""

    def __init__(self, folder: Path, presets: dict[str, str], data: dict[str, Path]):
        self.folder, self.presets, self.data = folder, presets, data
        self.done: dict[tuple[str, str, str], dict] = {}

    def __getitem__(self, key: tuple[str, str, str]) -> dict:
        if key not in self.done:
            family, strategy, labels = key
            snaps = Snapshots()
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(trainer, "USE_FEATURE_CACHE", False)  # head-only: images
                patch.setattr(trainer.Trainer, "fit", snaps.wrap(trainer.Trainer.fit))
                spec = spec_of(
                    self.data[labels], self.presets[family], strategy, STRATEGY_PARAMS[strategy]
                )
                metrics = engine.run(spec, self.folder / f"{family}-{strategy}-{labels}")
            self.done[key] = {"metrics": metrics, "snaps": snaps}
        return self.done[key]


@pytest.fixture(scope="module")
def runs(hub_dir, presets, target, shuffled) -> Runs:
    return Runs(hub_dir, presets, {"true": target, "shuffled": shuffled})


CELLS = [(f, s) for f in ("vit", "dinov2") for s in STRATEGY_PARAMS]


@pytest.mark.slow
@pytest.mark.parametrize("family,strategy", CELLS)
def test_preset_learns_the_task(runs, family, strategy):
    metrics = runs[family, strategy, "true"]["metrics"]
    assert metrics["status"] == "ok", metrics.get("reason")
    assert metrics["spec"]["backbone"]["name"] == "keras_hub"
    assert metrics["pretrained"] is True
    assert metrics["val"]["accuracy"] >= LEARNS, (family, strategy, metrics["val"])
    assert metrics["forward_flops"] > 0 and metrics["params_trainable"] > 0  # cost fields


@pytest.mark.slow
def test_lora_on_shuffled_labels_stays_near_chance(runs):
    metrics = runs["vit", "lora", "shuffled"]["metrics"]
    assert metrics["status"] == "ok", metrics.get("reason")
    assert metrics["val"]["accuracy"] <= NEAR_CHANCE, metrics["val"]


def _changed(before: dict, after: dict) -> set[str]:
    return {p for p in before if not np.array_equal(before[p], after[p])}


@pytest.mark.slow
@pytest.mark.parametrize("family", ["vit", "dinov2"])
def test_lora_changes_only_its_adapters_and_the_head(runs, family):
    """Keras's LoRA on every Dense / EinsumDense of the transformer blocks: the adapters
    and the head move; every original weight (kernels, biases, norms, embeddings) does not."""
    snaps = runs[family, "lora", "true"]["snaps"]
    after = snaps.after["lora"]
    adapters = {p for p in after if "lora_kernel" in p}
    originals = set(snaps.before) - adapters
    assert adapters and originals
    assert set(snaps.trainable["lora"]) == adapters
    assert _changed({p: snaps.before[p] for p in originals}, after) == set()
    # B starts at zero: it moved in every adapted layer
    assert all(np.any(after[p]) for p in adapters if p.endswith("lora_kernel_b"))
    assert any(
        not np.array_equal(a, b) for a, b in zip(snaps.head_before, snaps.head_after, strict=True)
    )


@pytest.mark.slow
@pytest.mark.parametrize("family", ["vit", "dinov2"])
def test_two_phase_unfreeze_counts_whole_transformer_blocks(runs, presets, family):
    """``unfreeze: 1``: phase 2 moves the last block (and the final norm) and nothing below."""
    snaps = runs[family, "two_phase", "true"]["snaps"]
    assert _changed(snaps.before, snaps.after["phase1"]) == set()
    moved = _changed(snaps.before, snaps.after["phase2"])
    backbone = build_backbone(
        {"name": "keras_hub", "weights": "preset", "kwargs": {"preset": presets[family]}},
        (SIZE, SIZE, 3),
    )
    last = dict(backbone.blocks)[backbone.blocks[-1][0]]
    top_paths = {
        v.path for layer in backbone.model.layers if layer.name in last for v in layer.weights
    }
    assert moved and moved <= top_paths
    block = f"{last[0]}/"  # the transformer block itself, not only the final norm
    assert any(block in path for path in moved), sorted(moved)


def test_preset_folder_is_keras_hubs_own_backbone(presets):
    """The rebuilt model is keras-hub's backbone after its converter, pooled at the CLS token."""
    x = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    for family, preset in presets.items():
        built = build_backbone(
            {"name": "keras_hub", "weights": "preset", "kwargs": {"preset": preset}},
            (SIZE, SIZE, 3),
        )
        hub = keras_hub.models.Backbone.from_preset(preset)
        converter = keras_hub.layers.ImageConverter.from_preset(preset)
        expected = np.asarray(hub(converter(x)))[:, 0]
        np.testing.assert_allclose(np.asarray(built.model(x)), expected, atol=1e-5)
        assert built.depth_unit == "block" and built.pretrained
        assert [name for name, _ in built.blocks][0] == "stem"
        assert len(built.blocks) == 1 + {"vit": 2, "dinov2": 3}[family]


@pytest.mark.parametrize("family", ["deit", "clip", "siglip"])
def test_other_transformers_rebuilt_block_by_block_compute_their_own_features(family):
    """DeiT, CLIP's and SigLIP's image encoders rebuilt one layer per block give the
    encoder's own output: the class token (DeiT, CLIP) or SigLIP's pooled head; a
    LoRA adapter reaches every block's projections."""
    keras.utils.set_random_seed(4)
    shape, common = (SIZE, SIZE, 3), {"patch_size": 4, "hidden_dim": 16, "num_heads": 2}
    if family == "deit":
        hub = keras_hub.models.DeiTBackbone(
            image_shape=shape, num_layers=2, intermediate_dim=32, **common
        )
        expected = lambda y: np.asarray(hub(y))[:, 0]  # noqa: E731
    elif family == "clip":
        hub = keras_hub.models.CLIPVisionEncoder(
            num_layers=2, intermediate_dim=32, image_shape=shape, **common
        )
        expected = lambda y: np.asarray(hub(y))[:, 0]  # noqa: E731
    else:
        hub = keras_hub.models.SigLIPVisionEncoder(
            num_layers=2, intermediate_dim=32, image_shape=shape, **common
        )
        expected = lambda y: np.asarray(hub(y))  # noqa: E731
    model = PresetBackbone(hub, shape, 1 / 127.5, -1.0, name="backbone")
    x = np.random.default_rng(0).uniform(0, 255, (2, *shape)).astype("float32")
    np.testing.assert_allclose(np.asarray(model(x)), expected(x / 127.5 - 1.0), atol=1e-5)
    assert [name for name, _ in model.blocks] == ["stem", "block_1", "block_2"]
    built = Backbone("keras_hub", model, "none", True, model.blocks, 1, depth_unit="block")
    assert len(adapted_layers(built)) >= 2 * 4  # q, k, v, output and the MLP, per block


def test_a_clip_preset_builds_its_image_encoder(hub_dir):
    """A joint image-text preset (CLIP) saved to a folder: the backbone is its image
    encoder, pooled at the class token after the final norm, with the preset's scaling."""
    keras.utils.set_random_seed(5)
    folder = hub_dir / "clip_tiny"
    common = {"hidden_dim": 16, "num_layers": 2, "num_heads": 2, "intermediate_dim": 32}
    vision = keras_hub.models.CLIPVisionEncoder(patch_size=4, image_shape=(SIZE, SIZE, 3), **common)
    text = keras_hub.models.CLIPTextEncoder(
        vocabulary_size=50, embedding_dim=16, max_sequence_length=8, **common
    )
    keras_hub.models.CLIPBackbone(vision, text, projection_dim=8).save_to_preset(str(folder))
    keras_hub.layers.CLIPImageConverter(
        image_size=(SIZE, SIZE), scale=[1 / (255 * s) for s in STD],
        offset=[-m / s for m, s in zip(MEAN, STD, strict=True)],
    ).save_to_preset(str(folder))  # fmt: skip
    built = build_backbone(
        {"name": "keras_hub", "weights": "preset", "kwargs": {"preset": str(folder)}},
        (SIZE, SIZE, 3),
    )
    x = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    hub = keras_hub.models.Backbone.from_preset(str(folder)).vision_encoder
    converter = keras_hub.layers.ImageConverter.from_preset(str(folder))
    expected = np.asarray(hub(converter(x)))[:, 0]
    np.testing.assert_allclose(np.asarray(built.model(x)), expected, atol=1e-5)
    assert [name for name, _ in built.blocks] == ["stem", "block_1", "block_2"]


def test_a_cnn_preset_keeps_its_graph_and_its_scaling_as_a_preprocess_mode(hub_dir):
    """A keras-hub CNN (ResNet) keeps its own layers (blocks by name), average-pooled, its
    converter's ImageNet scaling as Preprocess mode torch."""
    folder = hub_dir / "resnet_tiny"
    keras.utils.set_random_seed(3)
    keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 8],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
    ).save_to_preset(str(folder))  # fmt: skip
    keras_hub.layers.ResNetImageConverter(
        scale=[1 / (255 * s) for s in STD], offset=[-m / s for m, s in zip(MEAN, STD, strict=True)]
    ).save_to_preset(str(folder))
    built = build_backbone(
        {"name": "keras_hub", "weights": "preset", "kwargs": {"preset": str(folder)}},
        (SIZE, SIZE, 3),
    )
    assert built.preprocess_mode == "torch" and built.depth_unit == "layer"
    assert len(built.blocks) > 2
    x = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    hub = keras_hub.models.Backbone.from_preset(str(folder))
    converter = keras_hub.layers.ImageConverter.from_preset(str(folder))
    expected = np.asarray(hub(converter(x)))
    scaled = np.asarray(Preprocess("torch")(x))
    np.testing.assert_allclose(np.asarray(built.model(scaled)), expected, atol=1e-4)
    with pytest.raises(SpecError, match="backbone 'keras_hub' has no transformer block"):
        STRATEGIES.get("lora")({"rank": 2}).check_backbone(built)


def test_feature_cache_keys_a_preset_by_its_files(hub_dir, presets, target):
    """A feature_extraction run fills the cache, the next reads it; the key holds the
    preset folder's file digests."""
    cache = hub_dir / "features"
    spec = spec_of(target, presets["vit"], "feature_extraction", {}, features_cache=str(cache))
    spec["training"]["epochs"] = 1
    first = engine.run(spec, hub_dir / "cache-1")
    second = engine.run(spec, hub_dir / "cache-2")
    assert first["features"]["source"] == "computed"
    assert second["features"]["source"] == "cache"
    key = json.loads((cache / "key.json").read_text())
    weights = key["fields"]["backbone"]["weights"]
    assert weights == {"preset": preset_identity(presets["vit"])}
    record = score_cache(cache, target, {"dataset": "target", "backbone": "vit"})
    assert record["weights"] == "keras-hub preset" and record["dim"] == 16
    assert np.isfinite(record["logme"]) and "keras-hub preset" in record["note"]


def test_vit_preset_at_another_input_size_names_its_size(presets):
    with pytest.raises(ValueError, match=r"takes 16x16 images.*input_size.*16"):
        build_backbone(
            {"name": "keras_hub", "weights": "preset", "kwargs": {"preset": presets["vit"]}},
            (24, 24, 3),
        )


def test_bad_presets_fail_at_parse_time_naming_them(tmp_path, presets):
    with pytest.raises(SpecError, match="vit_base_patch16_224_imagenett.*did you mean"):
        check_preset("vit_base_patch16_224_imagenett", "backbone.preset")
    with pytest.raises(SpecError, match="does not exist"):
        check_preset(str(tmp_path / "nowhere"), "backbone.preset")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(SpecError, match="lacks image_converter.json, model.weights.h5"):
        check_preset(str(tmp_path / "half"), "backbone.preset")
    assert check_preset("dinov2_small", "backbone.preset") == "dinov2_small"
    spec = {
        "dataset": {"prepared": "p"},
        "backbone": {"preset": presets["vit"], "weights": "imagenet"},
        "strategy": {"name": "lora"},
    }
    with pytest.raises(SpecError, match="'imagenet' is not valid for a keras-hub preset"):
        resolve_spec(spec)
    config = {
        "datasets": {"d": {"loader": "synthetic", "image_size": 16}},
        "backbones": {"vit": {"preset": "not_a_preset"}},
        "strategies": {"fe": {"name": "feature_extraction"}},
        "augmentations": {"none": {"name": "none"}},
        "matrix": [{"datasets": ["d"], "backbones": ["vit"], "strategies": ["fe"],
                    "augmentations": ["none"]}],
    }  # fmt: skip
    with pytest.raises(StudyConfigError, match="backbones.vit.preset: 'not_a_preset'"):
        validate_config(config)
    config["backbones"]["vit"]["preset"] = presets["vit"]
    study = load_study(config)  # every run spec resolved as the jobs resolve it
    spec = study.run_spec(study.runs[0])
    assert spec["backbone"] == {
        "name": "keras_hub",
        "weights": "preset",
        "kwargs": {"preset": presets["vit"]},
    }
    assert "features_cache" in spec  # a preset's features have an identity: cached
    resolved = validate_config(config)["backbones"]["vit"]
    assert resolved == {
        "name": "keras_hub",
        "weights": "preset",
        "kwargs": {"preset": presets["vit"]},
    }


def test_lora_on_a_backbone_without_transformer_blocks_is_an_error():
    backbone = build_backbone(
        {"name": "small_cnn", "weights": "none", "kwargs": {"widths": [4, 8]}}, (SIZE, SIZE, 3)
    )
    with pytest.raises(SpecError, match="backbone 'small_cnn' has no transformer block"):
        STRATEGIES.get("lora")({"rank": 2}).check_backbone(backbone)
    with pytest.raises(SpecError, match="strategy.params.rank: 0 must be an integer >= 1"):
        STRATEGIES.get("lora").resolve_params({"rank": 0})


@pytest.mark.slow
def test_a_preset_runs_model_keras_loads_in_a_fresh_process(runs, hub_dir, target):
    """``load_run_model`` imports keras-hub for a model.keras that holds its layers (a
    fresh process has not imported it); the LoRA run's model predicts as it was evaluated."""
    runs["vit", "lora", "true"]  # noqa: B018 (trains the run when not done yet)
    run = hub_dir / "vit-lora-true"
    code = (
        "import sys, json, numpy as np\n"
        "from pathlib import Path\n"
        "from tlbench.models.backbones.from_run import load_run_model\n"
        "from tlbench.datasets import load_prepared\n"
        "assert 'keras_hub' not in sys.modules\n"
        "model = load_run_model(Path(sys.argv[1]))\n"
        "x, y = load_prepared(sys.argv[2]).split('val', mmap=False)\n"
        "print(json.dumps(float(np.mean(np.argmax(model.predict(x, verbose=0), 1) == y))))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    done = subprocess.run(
        [sys.executable, "-c", code, str(run), str(target)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    accuracy = json.loads(done.stdout.strip().splitlines()[-1])
    metrics = json.loads((run / "metrics.json").read_text())
    assert accuracy == pytest.approx(metrics["val"]["accuracy"])


def test_lora_tunes_its_strength_alpha():
    """``tuning.space.alpha`` (log scale) is checked at parse time and declared per trial."""
    import keras_tuner

    from tlbench.core.errors import TuningError
    from tlbench.tuning.search import hypermodel_class
    from tlbench.tuning.space import resolve_tuning

    tuning = resolve_tuning("lora", {"tuner": "random", "space": {"alpha": {"min": 1, "max": 16}}})
    with pytest.raises(TuningError, match="space.rank: strategy 'lora' cannot tune 'rank'"):
        resolve_tuning("lora", {"space": {"rank": {"min": 1, "max": 8}}})

    class Search:
        spec = {"strategy": {"name": "lora"}}

    Search.tuning = tuning
    hp = keras_tuner.HyperParameters()
    values = hypermodel_class("lora")(Search()).declare(hp)
    assert 1 <= values["alpha"] <= 16 and hp.get("alpha") == values["alpha"]
