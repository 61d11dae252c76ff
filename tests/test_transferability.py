"""Transferability scores (tlbench.analysis.transferability): LogME against a brute-force
evidence, H-score, k-NN, NCE and LEEP against their definitions, and the check of
the scores against measured accuracies (weighted Kendall tau)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import weightedtau

from tlbench.analysis.transferability import cache, prescreen, tau
from tlbench.analysis.transferability import logme as L
from tlbench.analysis.transferability import scores as T
from tlbench.report.figures import transferability

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers


def brute_log_evidence(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """log N(y; 0, I/beta + F F^T/alpha): the evidence as the Gaussian marginal of y
    (no SVD, no fixed point; an infinite alpha or beta drops its part of the covariance)."""
    n = len(y)
    cov = np.zeros((n, n))
    if math.isfinite(beta):
        cov += np.eye(n) / beta
    if math.isfinite(alpha):
        cov += f @ f.T / alpha
    sign, logdet = np.linalg.slogdet(cov)
    assert sign > 0
    return -0.5 * n * math.log(2 * math.pi) - 0.5 * logdet - 0.5 * y @ np.linalg.solve(cov, y)


def informative(n: int, d: int, classes: int = 3, seed: int = 0, signal: float = 2.0):
    """Features that carry the class (class means apart) and their labels."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centres = rng.normal(size=(classes, d))
    return rng.normal(size=(n, d)) + signal * centres[y], y


def regression(n: int, d: int, seed: int = 0):
    """A linear target with noise: a finite fixed point in both regimes."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n, d))
    return f, 0.1 * f @ rng.normal(size=d) + rng.normal(size=n)


# --------------------------------------------------------------------------- LogME


@pytest.mark.parametrize("n, d", [(30, 80), (12, 40), (80, 30), (200, 10)])
def test_log_evidence_equals_brute_force_at_the_fixed_point(n, d):
    """Both regimes (N < D and N > D): the SVD/eigenvalue evidence at the found alpha,
    beta equals log N(y; 0, I/beta + F F^T/alpha) computed with slogdet and solve."""
    f, y = regression(n, d, seed=n + d)
    found = L.log_evidence(f, y)
    assert math.isfinite(found.alpha) and math.isfinite(found.beta)
    brute = brute_log_evidence(f, y, found.alpha, found.beta)
    assert found.log_evidence == pytest.approx(brute, rel=1e-8, abs=1e-8)


@pytest.mark.parametrize("n, d", [(30, 80), (80, 30)])
def test_fixed_point_conditions_hold_at_convergence(n, d):
    """alpha |m|^2 = gamma and beta |y - Fm|^2 = N - gamma with gamma = D - alpha tr(A^-1),
    and the evidence is stationary in log alpha and log beta (finite differences)."""
    f, y = regression(n, d, seed=7)
    e = L.log_evidence(f, y)
    a = e.alpha * np.eye(d) + e.beta * f.T @ f
    m = e.beta * np.linalg.solve(a, f.T @ y)
    gamma = d - e.alpha * np.trace(np.linalg.inv(a))
    assert e.gamma == pytest.approx(gamma, rel=1e-8)
    assert e.alpha * (m @ m) == pytest.approx(gamma, rel=1e-8)
    assert e.beta * np.sum((y - f @ m) ** 2) == pytest.approx(n - gamma, rel=1e-8)
    h = 1e-4
    for da, db in ((h, 0), (0, h)):
        up = brute_log_evidence(f, y, e.alpha * math.exp(da), e.beta * math.exp(db))
        down = brute_log_evidence(f, y, e.alpha * math.exp(-da), e.beta * math.exp(-db))
        assert abs(up - down) / (2 * h) < 1e-5


def test_few_shot_case_keeps_the_zero_eigenvalue_terms():
    """N = 30 < D = 80: ours is the exact evidence; the official fixed-point path's
    log-determinant (only the min(N, D) eigenvalues alpha + beta sigma_i, dropping
    (D - N) log alpha) evaluated at the same alpha, beta is far above it."""
    f, y = regression(30, 80, seed=3)
    e = L.log_evidence(f, y)
    n, d = f.shape
    sigma = np.linalg.svd(f, compute_uv=False) ** 2
    a = e.alpha * np.eye(d) + e.beta * f.T @ f
    m = e.beta * np.linalg.solve(a, f.T @ y)
    dropped = (
        0.5 * d * math.log(e.alpha)
        + 0.5 * n * math.log(e.beta)
        - 0.5 * n * math.log(2 * math.pi)
        - 0.5 * e.beta * np.sum((y - f @ m) ** 2)
        - 0.5 * e.alpha * (m @ m)
        - 0.5 * np.sum(np.log(e.alpha + e.beta * sigma))
    )
    exact = brute_log_evidence(f, y, e.alpha, e.beta)
    assert e.log_evidence == pytest.approx(exact, rel=1e-8)
    assert dropped - exact == pytest.approx(0.5 * (d - n) * math.log(e.alpha), rel=1e-6)
    assert abs(dropped - e.log_evidence) / n > 0.1  # per-sample scores differ


@pytest.mark.parametrize(
    "n, d, make, seed, limit",
    [
        (30, 80, "random", 4, "alpha"),  # labels the features do not carry: w = 0 is best
        (40, 3, "random", 0, "alpha"),  # N > D
        (30, 80, "informative", 0, "beta"),  # N < D, class structure: fitted without noise
    ],
)
def test_divergent_iterations_give_the_supremum(n, d, make, seed, limit):
    """Where the fixed point runs off to alpha = inf or beta = inf, the value is the limit
    model's evidence (brute force with that part of the covariance dropped) and no
    finite (alpha, beta) on a wide grid has a larger evidence."""
    if make == "random":
        rng = np.random.default_rng(seed)
        f, y = rng.normal(size=(n, d)), (rng.integers(0, 3, n) == 0).astype(float)
    else:
        f, labels = informative(n, d, seed=seed)
        y = (labels == 0).astype(float)
    e = L.log_evidence(f, y)
    assert math.isinf(getattr(e, limit))
    assert e.log_evidence == pytest.approx(brute_log_evidence(f, y, e.alpha, e.beta), rel=1e-8)
    grid = np.logspace(-4, 8, 25)
    best = max(brute_log_evidence(f, y, a, b) for a in grid for b in grid)
    assert e.log_evidence >= best - 1e-9


def test_logme_is_the_per_sample_evidence_averaged_over_one_hot_columns():
    f, y = informative(90, 20, classes=3, signal=0.7)
    columns = [L.log_evidence(f, (y == c).astype(float)).log_evidence for c in range(3)]
    assert L.logme(f, y) == pytest.approx(np.mean(columns) / 90, rel=1e-12)


# --------------------------------------------------------------------------- H-score


def test_hscore_by_hand_in_one_dimension():
    """1-D: H = var(E[f|y]) / var(f); f = 0,1,2,3 with classes {0,1},{2,3}: 4 / 5."""
    f = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([0, 0, 1, 1])
    assert T.hscore(f, y) == pytest.approx(0.8, rel=1e-12)
    assert T.hscore(f * 10 + 3, y) == pytest.approx(0.8, rel=1e-12)  # affine invariant


def test_hscore_matches_its_definition_and_ignores_invertible_maps():
    f, y = informative(60, 5, classes=3, signal=1.0)
    g = np.stack([f[y == c].mean(axis=0) for c in y])
    expected = np.trace(np.linalg.inv(np.cov(f, rowvar=False)) @ np.cov(g, rowvar=False))
    assert T.hscore(f, y) == pytest.approx(expected, rel=1e-9)
    mix = np.random.default_rng(1).normal(size=(5, 5))
    assert T.hscore(f @ mix, y) == pytest.approx(expected, rel=1e-6)


def test_hscore_without_shrinkage_refuses_features_of_rank_n_minus_1():
    """N - 1 <= D: tr(cov(f)^+ cov(E[f|y])) is C - 1 for any features (here pure noise);
    the shrunk H-score still tells informative features from noise."""
    rng = np.random.default_rng(2)
    noise, y = rng.normal(size=(20, 40)), np.arange(20) % 4
    c = noise - noise.mean(axis=0)
    g = np.stack([c[y == k].mean(axis=0) for k in y])
    assert np.trace(np.linalg.pinv(c.T @ c) @ g.T @ g) == pytest.approx(3.0)  # the trap
    with pytest.raises(T.DegenerateScore, match=r"rank N - 1 = 19 .* C - 1 = 3"):
        T.hscore(noise, y)
    good, _ = informative(20, 40, classes=4)
    assert T.hscore(good, y, shrinkage=True) > T.hscore(noise, y, shrinkage=True)
    record = cache.score_features(noise, y, noise, y)
    assert math.isnan(record["hscore"]) and "rank N - 1" in record["note"]
    assert math.isfinite(record["hscore_shrunk"])


def test_shrunk_hscore_matches_the_ledoit_wolf_definition():
    """tr(((1-d) S + d mu I)^-1 (1-d) S_g), 1/N covariances, d the Ledoit-Wolf shrinkage."""
    from sklearn.covariance import ledoit_wolf_shrinkage

    f, y = informative(40, 30, classes=4, signal=0.5)
    c = f - f.mean(axis=0)
    s = c.T @ c / len(c)
    delta = ledoit_wolf_shrinkage(c, assume_centered=True)
    shrunk = (1 - delta) * s + delta * np.trace(s) / s.shape[0] * np.eye(s.shape[0])
    g = np.stack([c[y == k].mean(axis=0) for k in y])
    expected = np.trace(np.linalg.inv(shrunk) @ ((1 - delta) * g.T @ g / len(c)))
    assert 0 < delta < 1
    assert T.hscore(f, y, shrinkage=True) == pytest.approx(expected, rel=1e-9)


# --------------------------------------------------------------------------- k-NN


def test_knn_accuracy_by_hand():
    """Cosine geometry: train points on two rays; the val point at 45+ degrees votes by angle,
    not by length (a Euclidean k-NN would take the long vector's class)."""
    train = np.array([[1.0, 0.0], [2.0, 0.1], [3.0, -0.1], [0.0, 1.0], [0.1, 9.0], [-0.1, 7.0]])
    labels = np.array([0, 0, 0, 1, 1, 1])
    val = np.array([[10.0, 0.5], [0.2, 0.1], [0.05, 1.0]])
    assert T.knn_accuracy(train, labels, val, np.array([0, 0, 1]), k=3) == 1.0
    assert T.knn_accuracy(train, labels, val, np.array([1, 1, 1]), k=3) == pytest.approx(1 / 3)


def test_knn_k_must_fit_the_train_split():
    f, y = informative(10, 4)
    with pytest.raises(ValueError, match=r"k: 11 must be an integer in 1\.\.10"):
        T.knn_accuracy(f, y, f, y, k=11)


# --------------------------------------------------------------------------- NCE, LEEP


def test_nce_by_hand():
    """Z determines Y: 0. Z independent of Y (2x2 balanced): -log 2. A mixed case by hand."""
    assert T.nce(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0])) == pytest.approx(0.0)
    assert T.nce(np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1])) == pytest.approx(-math.log(2))
    # z=0: y = 0,0,1 ; z=1: y = 1 -> -(3/4) H(2/3, 1/3)
    h = -(2 / 3) * math.log(2 / 3) - (1 / 3) * math.log(1 / 3)
    assert T.nce(np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1])) == pytest.approx(-0.75 * h)


def test_leep_by_hand_and_equal_to_nce_for_one_hot_outputs():
    theta = np.array([[0.5, 0.5], [1.0, 0.0]])
    y = np.array([0, 1])
    # P(z, y) = [[0.25, 0.5], [0.25, 0]] ; P(y|z=0) = [1/3, 2/3], P(y|z=1) = [1, 0]
    # p(y0|x0) = 0.5/3 + 0.5 = 2/3 ; p(y1|x1) = 2/3
    assert T.leep(theta, y) == pytest.approx(math.log(2 / 3))
    z = np.array([0, 0, 0, 1, 2, 2])
    labels = np.array([0, 0, 1, 1, 2, 0])
    assert T.leep(np.eye(3)[z], labels) == pytest.approx(T.nce(z, labels))


def test_leep_rejects_rows_that_are_not_distributions():
    with pytest.raises(ValueError, match="row 1 sums to 0.9"):
        T.leep(np.array([[0.5, 0.5], [0.6, 0.3]]), np.array([0, 1]))


# --------------------------------------------------------------------------- ranking


def test_every_score_ranks_informative_features_above_random_ones():
    f, y = informative(120, 16, classes=4, signal=1.5)
    rng = np.random.default_rng(5)
    good = cache.score_features(f[:80], y[:80], f[80:], y[80:])
    noise = rng.normal(size=f.shape)
    bad = cache.score_features(noise[:80], y[:80], noise[80:], y[80:])
    for score in T.FEATURE_SCORES:
        assert good[score] > bad[score], score
    # source outputs: a classifier that tracks the target beats one that ignores it
    z_good = (y + (rng.random(len(y)) < 0.1)) % 4
    z_bad = rng.integers(0, 4, len(y))
    assert T.nce(z_good, y) > T.nce(z_bad, y)
    assert T.leep(np.eye(4)[z_good] * 0.9 + 0.025, y) > T.leep(np.eye(4)[z_bad] * 0.9 + 0.025, y)


def test_bad_inputs_are_named():
    f, y = informative(10, 3)
    with pytest.raises(ValueError, match=r"labels: expected 10 labels .* shape \(9,\)"):
        L.logme(f, y[:9])
    broken = f.copy()
    broken[2, 1] = np.nan
    with pytest.raises(ValueError, match="features: 1 non-finite"):
        T.hscore(broken, y)
    with pytest.raises(ValueError, match=r"at least 2 classes, got \[0\]"):
        L.logme(f, np.zeros(10, dtype=int))


# --------------------------------------------------------------------------- workflow pieces


@pytest.fixture(scope="module")
def sealed_prepared(tiny_prepared, tmp_path_factory) -> Path:
    """The tiny prepared dataset without its test split (as a pilot study's): a score
    job that opened it would fail."""
    import shutil

    sealed = tmp_path_factory.mktemp("sealed") / "prepared"
    shutil.copytree(tiny_prepared, sealed)
    for name in ("test_x.npy", "test_y.npy"):
        (sealed / name).unlink()
    return sealed


def _fake_cache(folder: Path, prepared: Path, weights, input_size: int = 32) -> dict:
    """A feature cache folder of informative random features of ``prepared``'s train/val
    images, its key naming ``weights`` (a cache key's weight identity)."""
    from tlbench.datasets import load_prepared

    data = load_prepared(prepared, splits=("train", "val"))
    rng = np.random.default_rng(0)
    folder.mkdir()
    feats = {}
    for split in ("train", "val"):
        labels = data.split(split)[1]
        feats[split] = (np.eye(3)[labels] @ rng.normal(size=(3, 8)) * 3).astype(np.float32)
        feats[split] += rng.normal(size=feats[split].shape).astype(np.float32)
        np.save(folder / f"{split}.npy", feats[split])
    backbone = {"name": "small_cnn", "kwargs": {"widths": [4, 8]}, "weights": weights}
    fields = {"backbone": backbone, "input_size": input_size}
    (folder / "key.json").write_text(json.dumps({"sha256": "x", "fields": fields}))
    return feats


def test_score_cache_reads_a_feature_cache_with_the_prepared_labels(sealed_prepared, tmp_path):
    """Train/val labels of the prepared dataset; its test split is never opened (a pilot
    study's prepared folder has no test files). ImageNet weights (no-top files): no
    source classifier, so NCE and LEEP are NaN and the note says why."""
    from tlbench.datasets import load_prepared

    data = load_prepared(sealed_prepared, splits=("train", "val"))
    folder = tmp_path / "features"
    feats = _fake_cache(folder, sealed_prepared, "imagenet")
    names = {"dataset": "tiny", "backbone": "cnn"}
    record = cache.score_cache(folder, sealed_prepared, names)
    y_train, y_val = data.split("train")[1], data.split("val")[1]
    assert record["logme"] == pytest.approx(L.logme(feats["train"], y_train))
    assert record["knn_accuracy"] == pytest.approx(
        T.knn_accuracy(feats["train"], y_train, feats["val"], y_val)
    )
    assert (record["input_size"], record["dim"], record["n_val"]) == (32, 8, len(y_val))
    assert record["weights"] == "imagenet"
    for score in T.SOURCE_SCORES:
        assert math.isnan(record[score]) and math.isnan(record[f"{score}_seconds"]), score
    assert "nce, leep: no source classifier: the project's ImageNet weights" in record["note"]
    assert set(T.SCORES) <= set(record)
    with pytest.raises(ValueError, match="'imagenet' weights, not a pretraining run's"):
        cache.score_cache(folder, sealed_prepared, names, tmp_path / "some_run")
    key = json.loads((folder / "key.json").read_text())
    key["fields"]["backbone"]["weights"] = {"random": 0, "keras_backend": "tensorflow"}  # control
    (folder / "key.json").write_text(json.dumps(key))
    record = cache.score_cache(folder, sealed_prepared, names)
    assert record["weights"] == "random(seed 0)" and math.isnan(record["nce"])
    assert "nce, leep: no source classifier: 'random(seed 0)' weights" in record["note"]
    np.save(folder / "val.npy", feats["val"][:-1])
    with pytest.raises(ValueError, match="cache is of another dataset"):
        cache.score_cache(folder, sealed_prepared, names)


@pytest.fixture(scope="module")
def source_run(tiny_prepared, tmp_path_factory) -> Path:
    """A pretraining-run-like folder: a small classifier over 4 source classes (a small
    CNN as its nested 'backbone', as the engine saves one) in model.keras, its class
    names in metrics.json."""
    import keras

    from tlbench.models.backbones.applications import build_backbone
    from tlbench.models.preprocess import Preprocess

    keras.utils.set_random_seed(3)
    cfg = {"name": "small_cnn", "weights": "none", "kwargs": {"widths": [4, 8]}}
    backbone = build_backbone(cfg, (16, 16, 3))
    inputs = keras.Input((16, 16, 3), name="image")
    x = Preprocess(backbone.preprocess_mode, name="preprocess")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(backbone.model(x))
    head = keras.layers.Dense(4, activation="softmax", name="head")
    outputs = head(x)
    # on standardised features (the tiny images' statistics): varied source predictions
    pooled = keras.Model(inputs, x).predict(np.load(tiny_prepared / "train_x.npy"), verbose=0)
    mean, std = pooled.mean(axis=0), pooled.std(axis=0) + 1e-6
    kernel = np.random.default_rng(3).normal(size=head.kernel.shape) / std[:, None]
    head.kernel.assign(kernel.astype(np.float32))
    head.bias.assign((-mean @ kernel).astype(np.float32))
    run = tmp_path_factory.mktemp("pretrained") / "cnn"
    run.mkdir()
    keras.Model(inputs, outputs).save(run / "model.keras")
    classes = ["w", "x", "y", "z"]
    (run / "metrics.json").write_text(json.dumps({"status": "ok", "classes": classes}))
    return run


def test_score_cache_scores_a_label_budgets_training_images(sealed_prepared, tmp_path):
    """budget 'n3': the scores of the train rows a run of that budget trains on (each run
    draws its subset with its seed, apply_budget), averaged over the runs' seeds, each
    seed's figures kept; k-NN on all of val; the record names the budget and seeds."""
    from tlbench.datasets import load_prepared
    from tlbench.models.inputs import apply_budget

    folder = tmp_path / "features"
    feats = _fake_cache(folder, sealed_prepared, "imagenet")
    names = {"dataset": "tiny", "backbone": "cnn"}
    record = cache.score_cache(folder, sealed_prepared, names, budget="n3", seeds=[0, 1])
    whole_data = load_prepared(sealed_prepared, splits=("train", "val"))
    logmes, knns = [], []
    for seed in (0, 1):
        data, _ = apply_budget(whole_data, 3, seed)
        rows, y = data.train_indices, data.split("train")[1]
        assert len(rows) == 9
        logmes.append(L.logme(feats["train"][rows], y))
        y_val = data.split("val")[1]
        knns.append(T.knn_accuracy(feats["train"][rows], y, feats["val"], y_val, k=record["knn_k"]))
    assert record["budget"] == "n3" and record["n_train"] == 9
    assert record["budget_seeds"] == [0, 1]
    assert record["per_seed"]["logme"] == pytest.approx(logmes)
    assert record["logme"] == pytest.approx(np.mean(logmes))
    assert record["knn_accuracy"] == pytest.approx(np.mean(knns))
    one = cache.score_cache(folder, sealed_prepared, names, budget="n3", seeds=[1])
    assert one["logme"] == pytest.approx(logmes[1])  # seed 1's own subset, not seed 0's
    whole = cache.score_cache(folder, sealed_prepared, names)
    assert whole["budget"] == "all" and whole["n_train"] == len(feats["train"])
    with pytest.raises(ValueError, match="budget label 'ten'"):
        cache.score_cache(folder, sealed_prepared, names, budget="ten")


def test_tau_is_computed_per_label_budget_from_that_budgets_scores():
    """Runs at n5 are compared with the scores computed at n5, runs on the whole split with
    the whole split's (the former check dropped every budget but 'all')."""
    backbones = ["a", "b", "c", "e"]
    accuracy = {"all": [0.9, 0.6, 0.7, 0.5], "n5": [0.5, 0.8, 0.6, 0.7]}
    rows = []
    for budget, values in accuracy.items():
        for r in _study_rows({b: [v] for b, v in zip(backbones, values, strict=True)}):
            rows.append({**r, "budget": budget})
    scores = pd.DataFrame(
        {
            "dataset": "d",
            "backbone": backbones * 2,
            "budget": ["all"] * 4 + ["n5"] * 4,
            "logme": [4.0, 1.0, 3.0, 0.0] + [0.0, 3.0, 1.0, 2.0],
        }
    )
    table = tau.tau_table(scores, pd.DataFrame(rows)).set_index(["budget", "accuracy"])
    for budget, values in accuracy.items():
        row = table.loc[(budget, "val_accuracy")]
        assert row["score"] == "logme" and row["backbones"] == 4
        expected = weightedtau(scores.loc[scores["budget"] == budget, "logme"], values)
        assert row["weighted_tau"] == pytest.approx(expected.statistic)
        assert row["weighted_tau"] == pytest.approx(1.0)  # each budget's own order


def test_score_cache_scores_the_pretraining_runs_classifier_on_train(
    sealed_prepared, source_run, tmp_path
):
    """A backbone pretrained by a run: its cache (tlbench.training.feature_cache) scored as ever, and
    NCE (argmax source labels) and LEEP of the run's classifier on the TRAIN images."""
    import keras

    from tlbench.datasets import load_prepared
    from tlbench.training import feature_cache

    spec = {
        "dataset": {"prepared": str(sealed_prepared)},
        "backbone": {
            "name": "small_cnn",
            "kwargs": {"widths": [4, 8]},
            "weights": {"run": str(source_run)},
        },
        "training": {"batch_size": 16, "input_size": 16},
    }
    folder = feature_cache.compute(spec, tmp_path / "features")
    names = {"dataset": "tiny", "backbone": "cnn"}
    record = cache.score_cache(folder, sealed_prepared, names, source_run, batch_size=16)
    x, y = load_prepared(sealed_prepared, splits=("train", "val")).split("train")
    model = keras.saving.load_model(source_run / "model.keras")
    probs = np.asarray(model.predict(np.asarray(x, np.float32), verbose=0), np.float64)
    assert len(np.unique(probs.argmax(axis=1))) > 1  # the check sees more than one source label
    assert record["weights"] == "pretraining run" and record["n_train"] == len(y)
    assert record["nce"] == pytest.approx(T.nce(probs.argmax(axis=1), y), abs=1e-12)
    assert record["leep"] == pytest.approx(T.leep(probs, y), rel=1e-6)
    for name in (*T.SCORES, "source_predict_seconds", "nce_seconds", "leep_seconds"):
        assert np.isfinite(record[name]), name
    assert "nce" not in record["note"] and "leep" not in record["note"]
    with pytest.raises(ValueError, match="need that run's folder"):
        cache.score_cache(folder, sealed_prepared, names)  # a run's cache without the run


def test_score_cache_checks_the_source_run_against_the_cache_key(
    sealed_prepared, source_run, tmp_path
):
    """The run's model.keras must be the one the features came from; a source model
    that takes images of another size scores them resized to its own (as ``direct``)."""
    import shutil

    import keras

    from tlbench.core.hashing import sha256_file

    names = {"dataset": "tiny", "backbone": "cnn"}
    _fake_cache(tmp_path / "stale", sealed_prepared, {"run_model_sha256": "0" * 64})
    with pytest.raises(ValueError, match="is not the model the feature cache .* computed from"):
        cache.score_cache(tmp_path / "stale", sealed_prepared, names, source_run)
    other = tmp_path / "big"
    shutil.copytree(sealed_prepared, other)
    for split in ("train", "val"):  # the same labels, 24x24 images
        x = np.load(other / f"{split}_x.npy")
        np.save(other / f"{split}_x.npy", np.tile(x, (1, 2, 2, 1))[:, :24, :24])
    digest = sha256_file(source_run / "model.keras")
    _fake_cache(tmp_path / "features", other, {"run_model_sha256": digest})
    record = cache.score_cache(tmp_path / "features", other, names, source_run)
    assert np.isfinite(record["logme"]) and record["note"] == ""
    model = keras.saving.load_model(source_run / "model.keras")
    x_train = np.load(other / "train_x.npy").astype("float32")
    y_train = np.load(other / "train_y.npy")
    probs = model.predict(keras.layers.Resizing(16, 16)(x_train), verbose=0)
    assert record["leep"] == pytest.approx(T.leep(probs, y_train), abs=1e-5)
    assert record["nce"] == pytest.approx(T.nce(probs.argmax(axis=1), y_train), abs=1e-9)


def test_scored_pairs_are_the_pretrained_backbones_of_the_matrix():
    from tlbench.study.load import load_study_file

    study = load_study_file(ROOT / "configs/test/tiny.yaml")
    assert cache.scored_pairs(study) == [("target", "cnn_source")]  # cnn_scratch is random


def test_scored_pairs_include_seeded_random_backbones():
    """{random: SEED} is a negative control with cacheable features: scored, labelled
    with its seed; `none` is still not."""
    import yaml

    from tlbench.study.load import load_study

    config = yaml.safe_load((ROOT / "configs/test/tiny.yaml").read_text())
    config["backbones"]["cnn_random"] = {
        **config["backbones"]["cnn_scratch"],
        "weights": {"random": 0},
    }
    config["matrix"][1]["backbones"].append("cnn_random")
    study = load_study(config)
    assert cache.scored_pairs(study) == [("target", "cnn_random"), ("target", "cnn_source")]
    assert study.features_spec("target", "cnn_random")["backbone"]["weights"] == {"random": 0}
    assert ("target", "cnn_random") in study.feature_pairs()
    assert cache.weights_label({"random": 0, "keras_backend": "jax"}) == "random(seed 0)"
    assert cache.weights_label("imagenet") == "imagenet"


def _study_rows(accuracies: dict[str, list[float]], strategy: str = "fine_tune"):
    rows = []
    for backbone, values in accuracies.items():
        for seed, value in enumerate(values):
            rows.append(
                {
                    "dataset": "d",
                    "backbone": backbone,
                    "strategy": strategy,
                    "augmentation": "none",
                    "seed": seed,
                    "status": "ok",
                    "val_accuracy": value,
                    "test_accuracy": value - 0.01,
                }
            )
    return rows


def test_tau_table_is_the_weighted_tau_over_backbones_of_seed_means():
    accuracies = {"a": [0.9, 0.8], "b": [0.6, 0.6], "c": [0.7, 0.75], "e": [0.5, 0.5]}
    rows = _study_rows(accuracies) + _study_rows({"a": [0.5], "b": [0.9]}, "scratch")
    rows.append({**rows[0], "seed": 9, "status": "failed", "val_accuracy": 0.0})  # ignored
    scores = pd.DataFrame(
        {
            "dataset": "d",
            "backbone": ["a", "b", "c", "e"],
            "logme": [1.0, 3.0, 2.0, 0.0],
            "hscore": [4.0, 2.0, 3.0, 1.0],
            "hscore_shrunk": 1.0,
            "knn_accuracy": [0.9, 0.5, 0.7, 0.4],
            "nce": np.nan,  # no backbone with a source classifier
            "leep": [-1.0, np.nan, -2.0, -3.0],
        }
    )
    table = tau.tau_table(scores, pd.DataFrame(rows)).set_index(["strategy", "score", "accuracy"])
    means = [0.85, 0.6, 0.725, 0.5]
    expected = weightedtau([1.0, 3.0, 2.0, 0.0], means).statistic
    row = table.loc[("fine_tune", "logme", "val_accuracy")]
    assert row["weighted_tau"] == pytest.approx(expected) and row["backbones"] == 4
    assert table.loc[("fine_tune", "hscore", "val_accuracy"), "weighted_tau"] == pytest.approx(1.0)
    constant = table.loc[("fine_tune", "hscore_shrunk", "val_accuracy")]
    assert math.isnan(constant["weighted_tau"]) and "same for all 4" in constant["note"]
    few = table.loc[("scratch", "logme", "val_accuracy")]
    assert math.isnan(few["weighted_tau"]) and "2 scored backbone(s)" in few["note"]
    assert "reported only" in table.loc[("fine_tune", "logme", "test_accuracy"), "note"]
    assert "reported only" not in row["note"]
    scores.loc[1, "logme"] = np.nan  # a degenerate score: said so, tau over the rest
    table = tau.tau_table(scores, pd.DataFrame(rows)).set_index(["strategy", "score", "accuracy"])
    row = table.loc[("fine_tune", "logme", "val_accuracy")]
    assert row["backbones"] == 3 and "1 of 4 backbones has no logme" in row["note"]
    kept = [0, 2, 3]
    expected = weightedtau([[1.0, 3.0, 2.0, 0.0][i] for i in kept], [means[i] for i in kept])
    assert row["weighted_tau"] == pytest.approx(expected.statistic)
    leep = table.loc[("fine_tune", "leep", "val_accuracy")]
    expected = weightedtau([-1.0, -2.0, -3.0], [means[i] for i in kept]).statistic
    assert leep["weighted_tau"] == pytest.approx(expected) and leep["backbones"] == 3
    assert leep["note"].startswith("1 of 4 backbones has no leep (the score table's note says why)")
    none = table.loc[("fine_tune", "nce", "val_accuracy")]
    assert math.isnan(none["weighted_tau"]) and none["backbones"] == 0
    assert none["note"] == (
        "undefined: none of the 4 backbone(s) has nce (the score table's note says why)"
    )


def test_each_tau_has_a_bootstrap_interval_over_backbones_and_a_permutation_p():
    """The interval is the percentile bootstrap of weightedtau with backbones resampled in
    pairs (scipy.stats.bootstrap's seeded draws, percentiles over the defined ones) and
    contains tau; the p-value is the exact two-sided permutation test over the 5! = 120
    orders of 5 backbones (enumerated here)."""
    from itertools import permutations

    from scipy.stats import bootstrap

    accuracies = {"a": [0.9], "b": [0.6], "c": [0.7], "e": [0.5], "f": [0.8]}
    score = [1.0, 3.0, 2.0, 0.0, 2.5]
    scores = pd.DataFrame({"dataset": "d", "backbone": list(accuracies), "logme": score})
    table = tau.tau_table(scores, pd.DataFrame(_study_rows(accuracies)))
    row = table.set_index(["score", "accuracy"]).loc[("logme", "val_accuracy")]
    acc = [v[0] for v in accuracies.values()]
    draws = bootstrap(
        (np.array(score), np.array(acc)), tau.weighted_tau, paired=True, vectorized=False,
        n_resamples=tau.TAU_RESAMPLES, method="percentile", random_state=tau.TAU_SEED,
    ).bootstrap_distribution  # fmt: skip
    draws = draws[np.isfinite(draws)]
    assert row["tau_low"] == pytest.approx(np.percentile(draws, 2.5))
    assert row["tau_high"] == pytest.approx(np.percentile(draws, 97.5))
    assert row["tau_low"] <= row["weighted_tau"] <= row["tau_high"]
    observed = row["weighted_tau"]
    null = np.array([tau.weighted_tau(score, list(p)) for p in permutations(acc)])
    tails = np.mean(null >= observed - 1e-12), np.mean(null <= observed + 1e-12)
    assert row["tau_p"] == pytest.approx(min(1.0, 2 * min(tails)))  # scipy's two-sided p


def test_findings_call_a_tau_positive_only_when_its_interval_is_above_zero():
    """Two pairs with tau > 0, one whose interval includes 0: '1 of 2 positive' (the
    former findings counted every tau > 0 as positive)."""
    from tlbench.report.pages import transferability as page

    rows = pd.DataFrame(
        {
            "dataset": ["d1", "d2"],
            "strategy": "s",
            "augmentation": "none",
            "score": "logme",
            "accuracy": "val_accuracy",
            "backbones": 8,
            "weighted_tau": [0.6, 0.3],
            "tau_low": [0.2, -0.3],
            "tau_high": [0.9, 0.8],
            "tau_p": [0.01, 0.4],
            "note": "",
        }
    )
    (line,) = page.tau_findings(rows)
    assert "1 of 2 positive and 0 negative" in line
    assert "1 with an interval that includes 0" in line
    assert "1 of 2 with a permutation p-value of 0.05 or more" in line
    pivot = page.tau_pivot(rows).set_index("dataset")
    assert pivot.loc["d2", "LogME"] == "+0.30 [-0.30, +0.80]"


def test_the_page_shows_tau_per_label_budget():
    from tlbench.report.pages import transferability as page

    rows = pd.DataFrame(
        {
            "dataset": "d",
            "budget": ["n10", "n5"],
            "strategy": "s",
            "augmentation": "none",
            "score": "logme",
            "accuracy": "val_accuracy",
            "backbones": 8,
            "weighted_tau": [0.6, 0.3],
            "tau_low": [0.2, -0.3],
            "tau_high": [0.9, 0.8],
            "tau_p": [0.01, 0.4],
            "note": "",
        }
    )
    pivot = page.tau_pivot(rows).set_index(["budget", "strategy"])
    assert pivot.loc[("n5", "s"), "LogME"] == "+0.30 [-0.30, +0.80]"
    n10, n5 = page.tau_findings(rows)
    assert n10.startswith("At budget n10: LogME: weighted tau") and "1 of 1 positive" in n10
    assert n5.startswith("At budget n5: LogME:") and "0 of 1 positive" in n5


def test_a_pilot_study_is_checked_against_validation_accuracy_only(tmp_path):
    rows = [
        {**r, "pilot": True, "test_accuracy": np.nan}
        for r in _study_rows({"a": [0.9], "b": [0.6], "c": [0.7]})
    ]
    scores = pd.DataFrame(
        {"dataset": "d", "backbone": ["a", "b", "c"], **{s: [3.0, 1.0, 2.0] for s in T.SCORES}}
    )
    table = tau.tau_table(scores, pd.DataFrame(rows))
    assert set(table["accuracy"]) == {"val_accuracy"}
    assert table["weighted_tau"].to_numpy() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="accuracy: 'test_accuracy'"):
        transferability.tau_scatter(
            scores, pd.DataFrame(rows), tmp_path / "x.png", accuracy="test_accuracy"
        )


def test_tau_scatter_writes_a_png(tmp_path):
    scores = pd.DataFrame(
        {
            "dataset": "d",
            "backbone": ["a", "b"],
            **{s: [1.0, 2.0] for s in T.SCORES},
        }
    )
    study = pd.DataFrame(_study_rows({"a": [0.5], "b": [0.7]}))
    path = transferability.tau_scatter(scores, study, tmp_path / "scatter.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="accuracy: 'train_accuracy'"):
        transferability.tau_scatter(scores, study, tmp_path / "x.png", accuracy="train_accuracy")


# --------------------------------------------------------------------------- prescreen


def prescreen_scores() -> pd.DataFrame:
    """A score table of four backbones on two datasets (rows in no particular order)."""
    return pd.DataFrame(
        {
            "dataset": ["pets", "ants", "ants", "pets", "ants", "ants", "pets"],
            "backbone": ["b", "d", "a", "a", "c", "b", "c"],
            "logme": [0.3, -0.5, 0.2, 0.9, 0.7, 0.2, 0.1],
            "knn_accuracy": [0.5, 0.6, 0.7, 0.8, 0.9, 0.4, 0.3],
            "note": [""] * 7,
        }
    )


def test_prescreen_keeps_the_top_keep_per_dataset_ties_by_name():
    table = prescreen.prescreen(prescreen_scores(), "logme", 2)
    assert list(table.columns) == list(prescreen.PRESCREEN_COLUMNS)
    ants = table[table["dataset"] == "ants"]
    # c (0.7) first; a and b tie at 0.2: a's name sorts first, so a is kept, b pruned
    assert list(ants["backbone"]) == ["c", "a", "b", "d"]
    assert list(ants["rank"]) == [1, 2, 3, 4]
    assert list(ants["kept"]) == [True, True, False, False]
    pets = table[table["dataset"] == "pets"]
    assert list(pets["backbone"]) == ["a", "b", "c"] and list(pets["kept"]) == [True, True, False]
    assert prescreen.kept_backbones(table) == {"ants": ["a", "c"], "pets": ["a", "b"]}
    assert "pruned: logme rank 3 of 4" in ants["reason"].iloc[2]
    # the tie rule does not depend on the table's row order
    shuffled = prescreen_scores().sample(frac=1.0, random_state=3)
    assert prescreen.kept_backbones(
        prescreen.prescreen(shuffled, "logme", 2)
    ) == prescreen.kept_backbones(table)
    # another score, another choice
    assert prescreen.kept_backbones(prescreen.prescreen(prescreen_scores(), "knn_accuracy", 1)) == {
        "ants": ["c"],
        "pets": ["a"],
    }


def test_kept_backbones_reads_the_csv(tmp_path):
    table = prescreen.prescreen(prescreen_scores(), "logme", 3)
    table.to_csv(tmp_path / "p.csv", index=False)
    assert prescreen.kept_backbones(tmp_path / "p.csv") == prescreen.kept_backbones(table)
    assert prescreen.kept_backbones(table) == {"ants": ["a", "b", "c"], "pets": ["a", "b", "c"]}


@pytest.mark.parametrize(
    ("score", "keep", "named"),
    [
        ("logmee", 1, "'logmee' is not a score"),
        ("logme", 0, "keep: 0 must be a positive integer"),
        ("logme", True, "keep: True must be"),
        ("logme", 4, "keep: 4 is more than the 3 backbone(s) scored on dataset 'pets'"),
    ],
)
def test_prescreen_rejects_bad_arguments(score, keep, named):
    with pytest.raises(ValueError) as error:
        prescreen.prescreen(prescreen_scores(), score, keep)
    assert named in str(error.value)


def test_prescreen_refuses_an_undefined_score():
    scores = prescreen_scores()
    scores.loc[2, "logme"] = math.nan
    scores.loc[2, "note"] = "hscore: degenerate"
    with pytest.raises(ValueError, match="undefined .NaN. for backbone 'a' on dataset 'ants'"):
        prescreen.prescreen(scores, "logme", 1)
