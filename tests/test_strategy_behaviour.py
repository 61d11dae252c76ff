"""Strategies checked by what they do, not by their flags (issue 14).

A small easy generated task (the ``synthetic`` loader: each class its own
colour and stripe angle) learnt by every training strategy from a "pretrained"
small CNN (trained once per session on another synthetic task), and the same
runs on shuffled training labels, which must stay near chance; ``direct`` on a
task whose class mapping is known; frozen weights and frozen BatchNorm
statistics compared bit for bit with the pretrained ones; discriminative
learning rates measured in the weights after one Adam step; early stopping
restoring an epoch before the last. All runs are session-scoped (seconds each).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from tlbench.datasets import load_prepared, make_tiny_prepared
from tlbench.training import engine, trainer

SIZE = 16
BACKBONE = {"name": "small_cnn", "kwargs": {"widths": [8, 16]}}
TARGET_CLASSES = 8
#: Strategy params of the behaviour runs (BatchNorm: the default policy, frozen).
STRATEGIES = {
    "scratch": {},
    "feature_extraction": {},
    "fine_tune": {},
    "two_phase": {"unfreeze": "block2", "phase1_epochs": 3, "phase2_epochs": 3},
    "freeze_bottom": {"frozen": "block1"},
    "discriminative_lr": {"decay": 0.3},
    "autoencoder": {"ae_epochs": 1},
    "lp_ft": {},
    "bitfit": {},
    "norm_only": {},
    "surgical": {"block": "auto"},
    # alpha 1: strong enough that its pull toward the start shows against fine_tune's run
    "l2_sp": {"alpha": 1.0},
    "bss": {},
}
#: Early stopping never stops (patience = epochs) but restores the epoch of best val loss.
TRAINING = {
    "epochs": 6,
    "batch_size": 16,
    "learning_rate": 0.01,
    "early_stopping": {"patience": 6, "monitor": "val_loss"},
}
LEARNS = 0.9
#: Shuffled labels: at most this validation accuracy (chance is 1/8 = 0.125).
NEAR_CHANCE = 0.4


def spec_of(prepared: Path, strategy: str, params: dict, weights, **training) -> dict:
    return {
        "dataset": {"prepared": str(prepared)},
        "backbone": {**BACKBONE, "weights": weights},
        "strategy": {"name": strategy, "params": params},
        "training": {**TRAINING, **training},
    }


def shuffled_copy(prepared: Path, outdir: Path, seed: int = 0) -> Path:
    """``prepared`` with its TRAIN labels permuted (val and test labels kept)."""
    shutil.copytree(prepared, outdir)
    y = np.load(outdir / "train_y.npy")
    np.save(outdir / "train_y.npy", np.random.default_rng(seed).permutation(y))
    return outdir


def class_subset(prepared: Path, outdir: Path, keep: list[int], names: list[str]) -> Path:
    """The classes ``keep`` of ``prepared`` only, renamed ``names`` (in that order)."""
    outdir.mkdir()
    for split in ("train", "val", "test"):
        x, y = load_prepared(prepared).split(split, mmap=False)
        mask = np.isin(y, keep)
        relabel = {source: target for target, source in enumerate(keep)}
        np.save(outdir / f"{split}_x.npy", x[mask])
        np.save(outdir / f"{split}_y.npy", np.array([relabel[v] for v in y[mask]], np.int64))
    (outdir / "classes.json").write_text(json.dumps(names))
    manifest = json.loads((prepared / "manifest.json").read_text())
    (outdir / "manifest.json").write_text(json.dumps({**manifest, "num_classes": len(keep)}))
    return outdir


@pytest.fixture(scope="session")
def behaviour_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("behaviour")


@pytest.fixture(scope="session")
def source_prepared(behaviour_dir) -> Path:
    """The pretraining task: 10 synthetic classes."""
    return make_tiny_prepared(behaviour_dir / "source", num_classes=10, size=SIZE, per_class=30)


@pytest.fixture(scope="session")
def pretrained(behaviour_dir, source_prepared) -> Path:
    """A small CNN trained from scratch on the source task: the "pretrained" run."""
    out = behaviour_dir / "pretrained"
    engine.run(spec_of(source_prepared, "scratch", {}, "none"), out)
    return out


@pytest.fixture(scope="session")
def target(behaviour_dir) -> Path:
    """The target task: 8 other synthetic classes (other colours, other angles)."""
    return make_tiny_prepared(
        behaviour_dir / "target", num_classes=TARGET_CLASSES, size=SIZE, per_class=30, seed=2
    )


@pytest.fixture(scope="session")
def shuffled_target(behaviour_dir, target) -> Path:
    # seed 1: with seed 0's permutation (at the per-epoch random state of the resume
    # change) two_phase's head mapped 4 of the 8 clusters to their own class by the
    # labels' chance majorities (val 0.525): a control of fixed features is that noisy
    return shuffled_copy(target, behaviour_dir / "target_shuffled", seed=1)


def backbone_weights(run: Path) -> dict[str, list[np.ndarray]]:
    """``{layer name: its weights}`` of the saved classifier's backbone."""
    backbone = keras.saving.load_model(run / "model.keras").get_layer("backbone")
    return {layer.name: layer.get_weights() for layer in backbone.layers if layer.weights}


def backbone_variables(run: Path) -> dict[str, np.ndarray]:
    """``{"<layer>/<variable>": value}`` of the saved classifier's backbone."""
    backbone = keras.saving.load_model(run / "model.keras").get_layer("backbone")
    return {
        f"{layer.name}/{w.name}": keras.ops.convert_to_numpy(w)
        for layer in backbone.layers
        for w in layer.weights
    }


def moved(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> set[str]:
    """The variables whose value differs in any bit."""
    assert set(before) == set(after)
    return {name for name in before if not np.array_equal(before[name], after[name])}


def unchanged(before: dict, after: dict, layers) -> list[str]:
    """Names of ``layers`` whose weights differ in any bit."""
    return [
        name
        for name in layers
        if not all(np.array_equal(a, b) for a, b in zip(before[name], after[name], strict=True))
    ]


def is_bn(name: str) -> bool:
    return "_bn" in name


class PhaseSnapshots:
    """Backbone weights after each fit of a run (``Trainer.fit`` wrapped)."""

    def __init__(self):
        self.after: dict[str, dict[str, list[np.ndarray]]] = {}

    def wrap(self, fit):
        snapshots = self

        def wrapped(trainer, model, phase, *args, **kwargs):
            fit(trainer, model, phase, *args, **kwargs)
            if any(layer.name == "backbone" for layer in model.layers):
                backbone = model.get_layer("backbone")
                snapshots.after[phase.name] = {
                    layer.name: layer.get_weights() for layer in backbone.layers if layer.weights
                }

        return wrapped


@pytest.fixture(scope="session")
def runs(behaviour_dir, target, shuffled_target, pretrained):
    """Every training strategy on the target task and on its shuffled-label copy.

    On the true labels, head-only phases push the images through the frozen
    backbone (``USE_FEATURE_CACHE = False``), so that freezing is what keeps it
    unchanged; on the shuffled ones they train on cached features, as in a study.
    """
    out: dict[tuple[str, str], dict] = {}
    fit = trainer.Trainer.fit
    with pytest.MonkeyPatch.context() as patch:
        for labels, prepared in (("true", target), ("shuffled", shuffled_target)):
            patch.setattr(trainer, "USE_FEATURE_CACHE", labels == "shuffled")
            for name, params in STRATEGIES.items():
                weights = "none" if name == "autoencoder" else {"run": str(pretrained)}
                snapshots = PhaseSnapshots()
                patch.setattr(trainer.Trainer, "fit", snapshots.wrap(fit))
                path = behaviour_dir / f"{name}-{labels}"
                metrics = engine.run(spec_of(prepared, name, params, weights), path)
                out[name, labels] = {"metrics": metrics, "path": path, "phases": snapshots.after}
    return out


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_learns_the_task(runs, name):
    metrics = runs[name, "true"]["metrics"]
    assert metrics["status"] == "ok"
    assert metrics["val"]["accuracy"] >= LEARNS, metrics["val"]


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_on_shuffled_labels_stays_near_chance(runs, name):
    metrics = runs[name, "shuffled"]["metrics"]
    assert metrics["status"] == "ok"
    assert metrics["val"]["accuracy"] <= NEAR_CHANCE, metrics["val"]


def test_feature_extraction_leaves_the_backbone_bit_for_bit(runs, pretrained):
    before = backbone_weights(pretrained)
    after = backbone_weights(runs["feature_extraction", "true"]["path"])
    assert set(after) == set(before) and any(is_bn(n) for n in before)
    assert unchanged(before, after, before) == []


def test_two_phase_first_phase_moves_nothing_second_moves_its_top(runs, pretrained):
    before = backbone_weights(pretrained)
    run = runs["two_phase", "true"]
    assert unchanged(before, run["phases"]["phase1"], before) == []
    after = backbone_weights(run["path"])
    # phase 2 (block2 unfrozen, BatchNorm frozen): block1 and every BatchNorm as they were
    still = [n for n in before if n.startswith("block1") or is_bn(n)]
    assert unchanged(before, after, still) == []
    assert unchanged(before, after, ["block2_conv1", "block2_conv2"]) == [
        "block2_conv1",
        "block2_conv2",
    ]


def test_freeze_bottom_leaves_its_frozen_part_and_batchnorm_bit_for_bit(runs, pretrained):
    before = backbone_weights(pretrained)
    after = backbone_weights(runs["freeze_bottom", "true"]["path"])
    still = [n for n in before if n.startswith("block1") or is_bn(n)]
    assert any(n.startswith("block2_bn") for n in still)
    assert unchanged(before, after, still) == []
    moved = [n for n in before if n.startswith("block2") and not is_bn(n)]
    assert unchanged(before, after, moved) == moved


@pytest.mark.parametrize("name", ["fine_tune", "discriminative_lr"])
def test_frozen_batchnorm_statistics_stay_bit_for_bit(runs, pretrained, name):
    before = backbone_weights(pretrained)
    after = backbone_weights(runs[name, "true"]["path"])
    bn = [n for n in before if is_bn(n)]
    assert bn and unchanged(before, after, bn) == []
    convs = [n for n in before if not is_bn(n)]
    assert unchanged(before, after, convs) == convs  # everything else trained


def _distance(before: dict, after: dict) -> float:
    """Euclidean distance between two backbones' weights (every layer, every array)."""
    squares = [
        np.sum((np.asarray(a, np.float64) - b) ** 2)
        for name in before
        for a, b in zip(after[name], before[name], strict=True)
    ]
    return float(np.sqrt(sum(squares)))


def test_l2_sp_keeps_the_backbone_nearer_its_start_than_fine_tune(runs, pretrained, target):
    """Same start, data and schedule: L2-SP's pull (alpha 1) keeps the backbone within a
    fifth of the distance plain fine-tuning moves it (measured: 0.68 against 4.96). Its
    validation loss is the classifier's own: the saved model's, the history's at the best
    epoch and the metrics' agree (the penalty is added in training steps only)."""
    before = backbone_weights(pretrained)
    tuned = _distance(before, backbone_weights(runs["l2_sp", "true"]["path"]))
    plain = _distance(before, backbone_weights(runs["fine_tune", "true"]["path"]))
    assert 0 < tuned < 0.2 * plain, (tuned, plain)
    run = runs["l2_sp", "true"]
    metrics, out = run["metrics"], run["path"]
    history = [row.split(",") for row in (out / "history.csv").read_text().splitlines()[1:]]
    best_val_loss = float(history[metrics["best_epoch"] - 1][4])
    assert _val_loss(out, target) == pytest.approx(best_val_loss, rel=1e-4)
    assert metrics["val"]["loss"] == pytest.approx(best_val_loss, rel=1e-4)


def test_l2_sp_penalty_is_alpha_half_squared_distance_plus_beta_half_head_norm():
    """On a small CNN and head moved off their start, BatchNorm frozen (its variables
    are not among those penalised: they never move)."""
    from backend_checks import l2_sp_penalty

    result = l2_sp_penalty()
    assert result["frozen"] > 0
    assert result["value"] == pytest.approx(result["expected"], rel=1e-5)


def test_bss_penalty_is_the_k_smallest_squared_singular_values():
    """Against numpy.linalg.svd, few-shot batches (5 images, 32 features: the smallest of
    the 5 singular values, not the 27 zeros of a full decomposition) included."""
    from backend_checks import bss_penalty

    for n, d, k, value, expected in bss_penalty():
        assert value == pytest.approx(expected, rel=1e-4), (n, d, k)


def test_penalties_act_through_keras_fit():
    """Through Keras's fit, from the same start: L2-SP keeps the weights near it, BSS
    drives the smallest singular value of each batch's features (8 images, 12 features)
    toward zero; no penalty does neither."""
    from backend_checks import penalised_fits

    fits = penalised_fits()
    assert fits["l2_sp"]["distance"] < 0.1 * fits["none"]["distance"]
    assert fits["bss"]["smallest"] < 0.05 * fits["none"]["smallest"]
    assert fits["bss"]["distance"] > 0.5 * fits["none"]["distance"]  # BSS: no pull to start


def test_batchnorm_train_moves_the_statistics(behaviour_dir, target, pretrained):
    """The other policy, to show the bit-for-bit checks above can tell them apart."""
    spec = spec_of(target, "fine_tune", {"batchnorm": "train"}, {"run": str(pretrained)}, epochs=1)
    metrics = engine.run(spec, behaviour_dir / "fine_tune-bn-train")
    assert metrics["spec"]["strategy"]["params"]["batchnorm"] == "train"
    before = backbone_weights(pretrained)
    after = backbone_weights(behaviour_dir / "fine_tune-bn-train")
    bn = [n for n in before if is_bn(n)]
    assert unchanged(before, after, bn) == bn


def test_discriminative_lr_update_sizes_follow_the_decay(behaviour_dir, target, pretrained):
    """One Adam step (one batch of the whole train split): Adam's first update of every
    weight is learning_rate * factor * sign(gradient), so the size of each block's update
    is its learning-rate factor, read off the saved model against the pretrained one."""
    n_train = len(load_prepared(target).split("train")[1])
    lr, decay = 1e-3, 0.1
    spec = spec_of(
        target,
        "discriminative_lr",
        {"decay": decay},
        {"run": str(pretrained)},
        epochs=1,
        batch_size=n_train,
        learning_rate=lr,
    )
    out = behaviour_dir / "discriminative-one-step"
    metrics = engine.run(spec, out)
    assert metrics["epochs_run"] == 1
    before, after = backbone_weights(pretrained), backbone_weights(out)
    factors = {"block1": decay, "block2": 1.0}
    for layer in ("block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2"):
        step = np.abs(after[layer][0] - before[layer][0]) / lr  # the kernel
        expected = factors[layer.split("_")[0]]
        assert np.median(step) == pytest.approx(expected, rel=1e-2), layer
        assert step.max() <= expected * 1.01, layer


def test_lp_ft_starts_fine_tuning_from_the_probe(behaviour_dir, target, pretrained, monkeypatch):
    """At the start of fine-tuning the classifier predicts what the probe predicts: its head
    holds the probe's solution (the probe's own probabilities on its validation features)."""
    from tlbench.strategies import lp_ft

    seen: dict = {}
    probe, fit = lp_ft.fit_probe, trainer.Trainer.fit
    x_val = np.asarray(load_prepared(target).split("val")[0], np.float32)

    def watched_probe(params, ctx):
        found, cached = probe(params, ctx)
        seen.update(probe=found, features=cached.val)
        return found, cached

    def watched_fit(self, model, phase, *args, **kwargs):
        seen.setdefault("start", model.predict(x_val, verbose=0))
        return fit(self, model, phase, *args, **kwargs)

    monkeypatch.setattr(lp_ft, "fit_probe", watched_probe)
    monkeypatch.setattr(trainer.Trainer, "fit", watched_fit)
    out = behaviour_dir / "lp_ft-start"
    metrics = engine.run(spec_of(target, "lp_ft", {}, {"run": str(pretrained)}, epochs=1), out)
    expected = seen["probe"].predict_proba(seen["features"])
    np.testing.assert_allclose(seen["start"], expected, atol=1e-4)
    assert metrics["probe_val_accuracy"] == seen["probe"].val_accuracy
    history = (out / "history.csv").read_text().splitlines()[1:]
    assert [row.split(",")[1] for row in history] == ["fine_tune"]
    assert float(history[0].split(",")[6]) == pytest.approx(TRAINING["learning_rate"] * 0.1)
    changed = moved(backbone_variables(pretrained), backbone_variables(out))
    assert {n for n in changed if "_conv" in n}  # then the backbone fine-tunes


def test_bitfit_moves_the_backbone_biases_and_nothing_else(runs, pretrained):
    before = backbone_variables(pretrained)
    changed = moved(before, backbone_variables(runs["bitfit", "true"]["path"]))
    biases = {n for n in before if n.endswith("/bias") or (is_bn(n) and n.endswith("/beta"))}
    assert any(n.endswith("/kernel") for n in before) and biases
    assert changed == biases  # no kernel, no BatchNorm scale, no moving statistic


def test_norm_only_moves_the_normalisation_scale_and_shift_and_nothing_else(runs, pretrained):
    before = backbone_variables(pretrained)
    changed = moved(before, backbone_variables(runs["norm_only", "true"]["path"]))
    affine = {n for n in before if is_bn(n) and n.split("/")[1] in ("gamma", "beta")}
    assert affine and changed == affine  # statistics frozen (batchnorm: frozen), convs kept


def test_surgical_chooses_its_block_on_validation_and_moves_only_it(runs, pretrained):
    run = runs["surgical", "true"]
    record = run["metrics"]["surgical"]
    trials = record["trials"]
    assert record["chosen_on"] == "validation"
    assert [t["block"] for t in trials] == ["block1", "block2"]
    best = max(trials, key=lambda t: (t["val_accuracy"], -t["val_loss"]))
    assert record["block"] == best["block"]
    rows = [row.split(",") for row in (run["path"] / "history.csv").read_text().splitlines()[1:]]
    assert [row[1] for row in rows] == ["try_block1", "try_block2"] + ["train"] * 6
    assert [float(row[5]) for row in rows[:2]] == [t["val_accuracy"] for t in trials]
    before = backbone_variables(pretrained)
    changed = moved(before, backbone_variables(run["path"]))
    block = {n for n in before if n.startswith(f"{record['block']}_conv")}
    assert block and changed == block  # its convolutions; its BatchNorm frozen, the rest kept


def test_direct_maps_a_known_mapping(behaviour_dir, source_prepared, pretrained):
    """Target classes t0..t3 are the source's class_7, class_2, class_5 and class_0."""
    keep = [7, 2, 5, 0]
    names = ["t0", "t1", "t2", "t3"]
    prepared = class_subset(source_prepared, behaviour_dir / "direct-target", keep, names)
    spec = spec_of(prepared, "direct", {}, {"run": str(pretrained)})
    metrics = engine.run(spec, behaviour_dir / "direct")
    assert metrics["direct_mapping"] == {
        "t0": "class_7",
        "t1": "class_2",
        "t2": "class_5",
        "t3": "class_0",
    }
    assert metrics["val"]["accuracy"] >= LEARNS


def _val_loss(run: Path, prepared: Path) -> float:
    model = keras.saving.load_model(run / "model.keras")
    x, y = load_prepared(prepared).split("val")
    prob = model.predict(np.asarray(x, np.float32), verbose=0)
    loss = keras.losses.sparse_categorical_crossentropy(y, prob)
    return float(np.mean(keras.ops.convert_to_numpy(loss)))


def test_early_stopping_restores_the_best_epoch_not_the_last(runs, shuffled_target):
    """Arranged: on shuffled training labels the model memorises noise, so its val loss is
    best early and worse at the end; patience lets every epoch run. The saved model must be
    the best epoch's."""
    run = runs["scratch", "shuffled"]
    metrics, out = run["metrics"], run["path"]
    history = [row.split(",") for row in (out / "history.csv").read_text().splitlines()[1:]]
    val_loss = [float(row[4]) for row in history]
    best, last = metrics["best_epoch"], len(val_loss)
    assert metrics["epochs_run"] == last == TRAINING["epochs"]
    assert best == int(np.argmin(val_loss)) + 1 < last  # the arrangement: best before the last
    assert val_loss[-1] - val_loss[best - 1] > 0.05
    saved = _val_loss(out, shuffled_target)
    assert saved == pytest.approx(val_loss[best - 1], rel=1e-4)
    assert saved == pytest.approx(metrics["val"]["loss"], rel=1e-4)
