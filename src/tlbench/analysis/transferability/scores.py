"""Transferability scores: rank backbones from their frozen features, without training.

Every score is computed from a backbone's pooled features of the target
dataset (the feature cache of :mod:`tlbench.features`) and the target labels;
a higher score predicts a better transfer.

* :func:`logme` -- LogME (You et al., ICML 2021): the maximised log marginal
  evidence of a Bayesian linear model from the features to each one-hot label
  column, per sample, averaged over classes. Computed *exactly*: the
  log-determinant of the posterior precision ``A = alpha I_D + beta F^T F``
  keeps its ``D - min(N, D)`` zero-eigenvalue terms ``log alpha``. The official
  implementation's default path sums ``log(alpha + beta sigma_i)`` over the
  ``min(N, D)`` nonzero spectrum only and so, with fewer samples than feature
  dimensions, drops ``(D - N) log alpha``, which inflates its scores.
* :func:`hscore` -- H-score (Bao et al., ICIP 2019):
  ``tr(cov(f)^+ cov(E[f | y]))``; with ``shrinkage=True`` the regularised
  H-score of Ibrahim et al. (ICLR 2023), whose feature covariance is the
  Ledoit-Wolf estimate (scikit-learn), stable when N is close to D.
* :func:`knn_accuracy` -- validation accuracy of a k-nearest-neighbour
  classifier (scikit-learn, cosine geometry: L2-normalised features, fixed
  ``k = KNN_K``) fitted on the train features: a probe that needs no training.
* :func:`nce` and :func:`leep` -- NCE (Tran et al., ICCV 2019) and LEEP
  (Nguyen et al., ICML 2020) from a *source classifier's* outputs on the
  target images. Only a backbone pretrained by a run of the study
  (``weights: {pretrain: ...}``, in run specs ``{run: <folder>}``) has one: the
  run's ``model.keras``, a classifier over the source dataset's classes. The
  project's ImageNet weights are the backbone without its classifier
  (``include_top=False``), and a weights file holds a backbone only: their
  NCE and LEEP are NaN with the reason in the record's ``note``.

:func:`score_features` scores one feature cache (LogME, H-scores on the train
split; k-NN fitted on train and scored on val; never the test split, which the
cache does not hold); :func:`score_source_outputs` scores a source classifier's
probabilities on the train images (:func:`source_probabilities`);
:func:`score_cache` does both for one (dataset, backbone). :func:`tau_table`
checks the scores against the study's own measured accuracies (weighted Kendall
tau over backbones, per dataset and training configuration); :func:`tau_scatter`
draws them.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlbench.core.errors import InputShapeError
from tlbench.core.hashing import sha256_file
from tlbench.models.probe import feature_matrix
from tlbench.models.weights import random_label, random_seed

#: Neighbours of the k-NN probe (fixed, not tuned: a tuned k would be chosen on
#: the validation split it is scored on).
KNN_K = 5
#: Fixed-point iteration of LogME: relative tolerance on alpha and beta, iteration cap.
LOGME_TOL = 1e-10
LOGME_MAX_ITER = 10_000
#: When one of the two parts of the marginal covariance ``I / beta + F F^T / alpha`` of
#: y falls below 1/LIMIT of the other along every direction (alpha / beta above LIMIT
#: times the largest eigenvalue of F^T F, or beta / alpha above LIMIT over the smallest
#: eigenvalue of a nonsingular F F^T), the iteration is taken to diverge, and the
#: evidence's supremum is its limit: the noise-only model (alpha = inf, w = 0) or the
#: noiseless one (beta = inf, y = F w exactly; possible only when N <= D).
LIMIT = 1e12
#: Scores of a backbone's frozen features (the feature cache).
FEATURE_SCORES = ("logme", "hscore", "hscore_shrunk", "knn_accuracy")
#: Scores of a source classifier's outputs on the target's train images.
SOURCE_SCORES = ("nce", "leep")
#: Score columns of the workflow's table, in order (higher = predicts better transfer).
SCORES = FEATURE_SCORES + SOURCE_SCORES
#: The measured accuracies the scores are checked against (mean over seeds).
ACCURACIES = ("val_accuracy", "test_accuracy")
#: The feature cache key's weight identities (tlbench.features.weights_identity) -> labels
#: (``{random: SEED}``: :func:`tlbench.weights.random_label`, e.g. ``random(seed 0)``).
WEIGHTS_LABELS = {"run_model_sha256": "pretraining run", "file_sha256": "weights file"}
#: Fewest backbones a rank correlation is computed over.
MIN_BACKBONES = 3


class DegenerateScore(ValueError):
    """A score that is defined but carries no information on these features."""


# --------------------------------------------------------------------------- inputs


def _features(features: Any, name: str = "features") -> np.ndarray:
    return feature_matrix(features, name, min_rows=2)


def _labels(labels: Any, n: int, name: str = "labels") -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"{name}: expected {n} labels (one per feature row), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name}: expected integer class labels, got dtype {y.dtype}")
    if len(y) and y.min() < 0:
        raise ValueError(f"{name}: negative label {int(y.min())}")
    if len(np.unique(y)) < 2:
        raise ValueError(f"{name}: a score needs at least 2 classes, got {np.unique(y).tolist()}")
    return y.astype(np.int64)


# --------------------------------------------------------------------------- LogME


@dataclass(frozen=True)
class Evidence:
    """The maximised evidence of ``y = F w + noise``, ``w ~ N(0, I/alpha)``, noise ``N(0, I/beta)``.

    ``log_evidence`` is ``log p(y | F, alpha, beta)`` (a total over the N samples)
    at the fixed point ``alpha, beta``; ``gamma`` the effective number of
    parameters ``sum_i beta sigma_i / (alpha + beta sigma_i)``. Where the
    iteration diverges, one of ``alpha``, ``beta`` is ``inf`` and ``log_evidence``
    the supremum, the limit model's evidence (see :data:`LIMIT`).
    """

    log_evidence: float
    alpha: float
    beta: float
    gamma: float
    iterations: int


@dataclass(frozen=True)
class _Spectrum:
    """Eigenvalues ``sigma`` of ``F^T F`` (all D of them, or the N of ``F F^T`` when N < D)
    and the projection of targets onto the matching left singular vectors."""

    n: int
    d: int
    sigma: np.ndarray  # r = min(N, D) eigenvalues (>= 0)
    left: np.ndarray  # N x r: left singular vectors (zero columns where sigma == 0 and N > D)


def _spectrum(f: np.ndarray) -> _Spectrum:
    n, d = f.shape
    if n < d:
        # F = U S V^T with U square (N x N): every direction of R^N is a column of U
        u, s, _ = np.linalg.svd(f, full_matrices=False)
        return _Spectrum(n, d, s**2, u)
    # N >= D: the D x D Gram matrix instead of an N x D U (N may be tens of thousands)
    sigma, v = np.linalg.eigh(f.T @ f)
    sigma = np.clip(sigma, 0.0, None)
    tol = sigma.max() * max(n, d) * np.finfo(np.float64).eps
    keep = sigma > tol
    left = np.zeros((n, d))
    left[:, keep] = (f @ v[:, keep]) / np.sqrt(sigma[keep])
    sigma = np.where(keep, sigma, 0.0)
    return _Spectrum(n, d, sigma, left)


def _evidence(spec: _Spectrum, y: np.ndarray, tol: float, max_iter: int) -> Evidence:
    """Maximise the evidence of one target column over alpha, beta (MacKay's fixed point)."""
    n, d, sigma = spec.n, spec.d, spec.sigma
    z2 = (spec.left.T @ y) ** 2  # squared coordinates of y along the left singular vectors
    # |y|^2 outside span(F) (zero up to rounding when N < D: U is then a basis of R^N)
    outside = max(float(y @ y) - float(z2.sum()), 0.0)
    alpha, beta = 1.0, 1.0
    top = float(sigma.max())
    bottom = float(sigma.min()) if n <= d else 0.0  # > 0: F F^T is nonsingular
    for iteration in range(1, max_iter + 1):
        if alpha > LIMIT * top * beta:
            return _noise_only(y, n, iteration)
        if beta * bottom > LIMIT * alpha:
            return _noiseless(spec, z2, iteration)
        denom = alpha + beta * sigma
        gamma = float(np.sum(beta * sigma / denom))
        mm = float(np.sum(beta**2 * sigma * z2 / denom**2))  # |m|^2
        residual = outside + float(np.sum((alpha / denom) ** 2 * z2))  # |y - F m|^2
        if mm <= 0.0:  # y orthogonal to every feature direction: w = 0 is best
            return _noise_only(y, n, iteration)
        if residual <= 0.0 or gamma >= n:
            raise ValueError(
                f"LogME: the evidence has no finite maximum (|y - Fm|^2 = {residual:.3g}, "
                f"gamma = {gamma:.6g}, N = {n}): the features fit the target without noise"
            )
        new_alpha, new_beta = gamma / mm, (n - gamma) / residual
        done = abs(new_alpha - alpha) <= tol * alpha and abs(new_beta - beta) <= tol * beta
        alpha, beta = new_alpha, new_beta
        if done:
            break
    else:
        raise ValueError(
            f"LogME: the fixed-point iteration did not converge in {max_iter} iterations "
            f"(alpha = {alpha:.6g}, beta = {beta:.6g}, relative tolerance {tol:g})"
        )
    denom = alpha + beta * sigma
    mm = float(np.sum(beta**2 * sigma * z2 / denom**2))
    residual = outside + float(np.sum((alpha / denom) ** 2 * z2))
    # log|A|, A = alpha I_D + beta F^T F: r = min(N, D) eigenvalues alpha + beta sigma_i and
    # D - r eigenvalues alpha (the term the official fixed-point path drops when N < D)
    logdet = float(np.sum(np.log(denom))) + (d - len(sigma)) * math.log(alpha)
    log_evidence = (
        0.5 * d * math.log(alpha)
        + 0.5 * n * math.log(beta)
        - 0.5 * n * math.log(2 * math.pi)
        - 0.5 * beta * residual
        - 0.5 * alpha * mm
        - 0.5 * logdet
    )
    gamma = float(np.sum(beta * sigma / denom))
    return Evidence(log_evidence, alpha, beta, gamma, iteration)


def _noise_only(y: np.ndarray, n: int, iteration: int) -> Evidence:
    """The supremum of the evidence when alpha grows without bound (w = 0): the noise-only
    model ``y ~ N(0, I / beta)`` at its best ``beta = N / |y|^2``."""
    beta = n / float(y @ y)
    value = 0.5 * n * (math.log(beta) - math.log(2 * math.pi) - 1.0)
    return Evidence(value, math.inf, beta, 0.0, iteration)


def _noiseless(spec: _Spectrum, z2: np.ndarray, iteration: int) -> Evidence:
    """The supremum of the evidence when beta grows without bound (N <= D, F F^T
    nonsingular): ``y ~ N(0, F F^T / alpha)`` at its best ``alpha = N / y^T (F F^T)^-1 y``."""
    n = spec.n
    alpha = n / float(np.sum(z2 / spec.sigma))
    value = 0.5 * n * (math.log(alpha) - math.log(2 * math.pi) - 1.0) - 0.5 * float(
        np.sum(np.log(spec.sigma))
    )
    return Evidence(value, alpha, math.inf, float(n), iteration)


def log_evidence(
    features: Any, y: Any, tol: float = LOGME_TOL, max_iter: int = LOGME_MAX_ITER
) -> Evidence:
    """The maximised log evidence of the Bayesian linear model from ``features`` (N x D)
    to the real target ``y`` (N), with alpha, beta at the fixed point."""
    f = _features(features)
    target = np.asarray(y, dtype=np.float64)
    if target.shape != (f.shape[0],):
        raise ValueError(f"y: expected shape ({f.shape[0]},), got {target.shape}")
    return _evidence(_spectrum(f), target, tol, max_iter)


def logme(features: Any, labels: Any) -> float:
    """LogME: the maximised log evidence per sample, averaged over the one-hot label columns."""
    f = _features(features)
    y = _labels(labels, f.shape[0])
    spec = _spectrum(f)
    values = [
        _evidence(spec, (y == c).astype(np.float64), LOGME_TOL, LOGME_MAX_ITER).log_evidence
        for c in np.unique(y)
    ]
    return float(np.mean(values) / f.shape[0])


# --------------------------------------------------------------------------- H-score


def _class_means(f: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each row replaced by the mean feature of its class: samples of E[f | y]."""
    g = np.empty_like(f)
    for c in np.unique(y):
        g[y == c] = f[y == c].mean(axis=0)
    return g


def hscore(features: Any, labels: Any, shrinkage: bool = False) -> float:
    """H-score ``tr(cov(f)^+ cov(E[f | y]))`` (Bao et al. 2019; sample covariances).

    With ``shrinkage``: the regularised H-score of Ibrahim et al. (2023),
    ``tr(S_lw^-1 (1 - delta) cov(E[f | y]))`` with ``S_lw = (1 - delta) S + delta mu I``
    the Ledoit-Wolf covariance of the features (1/N covariances throughout).

    Without shrinkage, when the centred features have rank N - 1 (generically so
    when N - 1 <= D), the H-score is C - 1 for *any* features (the pseudo-inverse
    projects onto every centred direction): :class:`DegenerateScore` is raised.
    """
    f = _features(features)
    y = _labels(labels, f.shape[0])
    f = f - f.mean(axis=0)
    g = _class_means(f, y)
    n, d = f.shape
    if not shrinkage and n - 1 <= d and np.linalg.matrix_rank(f) == n - 1:
        raise DegenerateScore(
            f"hscore: the centred features have rank N - 1 = {n - 1} (N = {n} samples, "
            f"D = {d} dimensions), where the H-score is C - 1 = {len(np.unique(y)) - 1} "
            "for any features; use shrinkage=True (hscore_shrunk)"
        )
    if not shrinkage:
        cov_f = f.T @ f / (len(f) - 1)
        cov_g = g.T @ g / (len(f) - 1)
        return float(np.trace(np.linalg.pinv(cov_f, hermitian=True) @ cov_g))
    from sklearn.covariance import LedoitWolf

    lw = LedoitWolf(assume_centered=True).fit(f)
    cov_g = g.T @ g / len(f)
    return float(np.trace(np.linalg.solve(lw.covariance_, (1 - lw.shrinkage_) * cov_g)))


# --------------------------------------------------------------------------- k-NN probe


def knn_accuracy(
    train_features: Any,
    train_labels: Any,
    val_features: Any,
    val_labels: Any,
    k: int = KNN_K,
) -> float:
    """Accuracy on val of a k-NN classifier fitted on train (cosine: L2-normalised features)."""
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import normalize

    train = _features(train_features, "train_features")
    val = _features(val_features, "val_features")
    if train.shape[1] != val.shape[1]:
        raise ValueError(
            f"val_features: {val.shape[1]} dimensions, train_features {train.shape[1]}"
        )
    y_train = _labels(train_labels, len(train), "train_labels")
    y_val = np.asarray(val_labels)
    if y_val.shape != (len(val),):
        raise ValueError(f"val_labels: expected shape ({len(val)},), got {y_val.shape}")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= len(train):
        raise ValueError(f"k: {k!r} must be an integer in 1..{len(train)} (the train samples)")
    knn = KNeighborsClassifier(n_neighbors=k).fit(normalize(train), y_train)
    return float(knn.score(normalize(val), y_val))


# --------------------------------------------------------------------------- NCE, LEEP


def _probabilities(source_probs: Any, n: int) -> np.ndarray:
    p = np.asarray(source_probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != n:
        raise ValueError(f"source_probs: expected an N x Z matrix with N = {n}, got {p.shape}")
    if not np.isfinite(p).all() or p.min() < 0:
        raise ValueError("source_probs: probabilities must be finite and >= 0")
    sums = p.sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1)))
    if abs(sums[worst] - 1) > 1e-6:
        raise ValueError(f"source_probs: row {worst} sums to {sums[worst]:.6g}, not 1")
    return p


def nce(source_labels: Any, target_labels: Any) -> float:
    """NCE ``-H(Y | Z)``: the negative conditional entropy of the target labels given the
    source classifier's predicted labels (its argmax), from their empirical joint."""
    y = _labels(target_labels, len(np.asarray(target_labels)), "target_labels")
    z = np.asarray(source_labels)
    if z.shape != y.shape or not np.issubdtype(z.dtype, np.integer) or z.min() < 0:
        raise ValueError(
            f"source_labels: expected {len(y)} non-negative integer labels, "
            f"got shape {z.shape} dtype {z.dtype}"
        )
    joint = np.zeros((z.max() + 1, y.max() + 1))
    np.add.at(joint, (z, y), 1.0)
    joint /= len(y)
    marginal = joint.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(joint > 0, joint * np.log(joint / marginal), 0.0)
    return float(terms.sum())


def leep(source_probs: Any, target_labels: Any) -> float:
    """LEEP: mean log-likelihood of the target labels under the expected empirical predictor
    ``p(y | x) = sum_z P(y | z) theta_z(x)``, ``theta`` the source classifier's probabilities."""
    y = _labels(target_labels, len(np.asarray(target_labels)), "target_labels")
    theta = _probabilities(source_probs, len(y))
    onehot = np.eye(y.max() + 1)[y]
    joint = theta.T @ onehot / len(y)  # P(z, y)
    marginal = joint.sum(axis=1, keepdims=True)  # P(z)
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    likelihood = np.einsum("nz,nz->n", theta, conditional[:, y].T)
    return float(np.mean(np.log(likelihood)))


# --------------------------------------------------------------------------- a feature cache


def score_features(
    train: np.ndarray,
    train_labels: np.ndarray,
    val: np.ndarray,
    val_labels: np.ndarray,
    k: int = KNN_K,
) -> dict[str, Any]:
    """Every score of :data:`FEATURE_SCORES` from train/val features, with each one's
    seconds; a :class:`DegenerateScore` is recorded as NaN with its reason in ``note``."""
    import sklearn.covariance  # noqa: F401  (imported before the clock starts:
    import sklearn.neighbors  # noqa: F401  the seconds are the scores' own)

    record: dict[str, Any] = {}
    jobs = {
        "logme": lambda: logme(train, train_labels),
        "hscore": lambda: hscore(train, train_labels),
        "hscore_shrunk": lambda: hscore(train, train_labels, shrinkage=True),
        "knn_accuracy": lambda: knn_accuracy(train, train_labels, val, val_labels, k),
    }
    notes = []
    for name in FEATURE_SCORES:
        start = time.perf_counter()
        try:
            record[name] = jobs[name]()
        except DegenerateScore as error:
            record[name] = math.nan
            notes.append(str(error))
        record[f"{name}_seconds"] = time.perf_counter() - start
    record["knn_k"] = k
    record["note"] = "; ".join(notes)
    return record


def score_source_outputs(source_probs: Any, train_labels: Any) -> dict[str, Any]:
    """Every score of :data:`SOURCE_SCORES` from a source classifier's probabilities on
    the train images (NCE on their argmax source labels), with each one's seconds."""
    y = _labels(train_labels, len(np.asarray(train_labels)), "train_labels")
    probs = _probabilities(source_probs, len(y))
    jobs = {
        "nce": lambda: nce(probs.argmax(axis=1), y),
        "leep": lambda: leep(probs, y),
    }
    record: dict[str, Any] = {}
    for name in SOURCE_SCORES:
        start = time.perf_counter()
        record[name] = jobs[name]()
        record[f"{name}_seconds"] = time.perf_counter() - start
    return record


def source_probabilities(
    run_dir: str | os.PathLike, backbone: Mapping[str, Any], images: np.ndarray, batch_size: int
) -> np.ndarray:
    """Source-class probabilities (N x Z) of a pretraining run's classifier
    (``run_dir/model.keras``) on ``images`` (uint8 N x H x W x 3), computed as the
    ``direct`` strategy computes them (:func:`tlbench.backbones.build_source_classifier`,
    :func:`tlbench.pipeline.predict`). ``backbone``: its ``name`` and ``kwargs``.
    Images of another height and width are resized to the model's input size first
    (as the ``direct`` strategy's are); another number of channels raises
    :class:`tlbench.errors.InputShapeError`."""
    from tlbench.models.backbones.applications import build_source_classifier
    from tlbench.models.inputs import predict

    cfg = {
        "name": backbone["name"],
        "kwargs": dict(backbone.get("kwargs") or {}),
        "weights": {"run": str(run_dir)},
    }
    model, _ = build_source_classifier(cfg, tuple(int(s) for s in images.shape[1:]))
    return predict(model, images, batch_size)


#: Why a backbone's weights have no source classifier, by the record's ``weights`` label.
NO_SOURCE_CLASSIFIER = {
    "imagenet": "the project's ImageNet weights are the backbone without its classifier "
    "(include_top=False files)",
    "weights file": "a weights file holds the backbone only",
}


def _undefined_source_scores(reason: str) -> dict[str, Any]:
    """NaN NCE and LEEP (and seconds), with ``reason`` as the note."""
    record: dict[str, Any] = {"source_predict_seconds": math.nan}
    for name in SOURCE_SCORES:
        record[name] = math.nan
        record[f"{name}_seconds"] = math.nan
    record["note"] = f"{', '.join(SOURCE_SCORES)}: {reason}"
    return record


def _source_scores(
    cache: Path,
    backbone: Mapping[str, Any],
    label: str,
    source_run: str | os.PathLike | None,
    train: tuple[np.ndarray, np.ndarray],
    batch_size: int,
) -> dict[str, Any]:
    """NCE and LEEP of one feature cache's backbone (see :func:`score_cache`)."""
    weights = backbone["weights"]
    if not (isinstance(weights, Mapping) and "run_model_sha256" in weights):
        if source_run is not None:
            raise ValueError(
                f"source_run: {source_run} was given, but the backbone of the feature cache "
                f"{cache} has {label!r} weights, not a pretraining run's"
            )
        why = NO_SOURCE_CLASSIFIER.get(label, f"{label!r} weights carry no source classifier")
        return _undefined_source_scores(f"no source classifier: {why}")
    if source_run is None:
        raise ValueError(
            f"the backbone of the feature cache {cache} was pretrained by a run "
            "(run_model_sha256 in its key.json): NCE and LEEP need that run's folder "
            "(source_run)"
        )
    model_file = Path(source_run) / "model.keras"
    if not model_file.is_file():
        raise FileNotFoundError(f"source_run: {model_file} does not exist (not a finished run?)")
    digest = sha256_file(model_file)
    if digest != weights["run_model_sha256"]:
        raise ValueError(
            f"source_run: {model_file} (sha256 {digest}) is not the model the feature "
            f"cache {cache} was computed from (run_model_sha256 {weights['run_model_sha256']})"
        )
    x, y = train
    start = time.perf_counter()
    try:
        probs = source_probabilities(source_run, backbone, x, batch_size)
    except InputShapeError as error:
        return _undefined_source_scores(
            f"the source classifier in {source_run} takes images of shape {error.takes}, "
            f"the target's prepared images are {error.given} (another number of channels)"
        )
    record: dict[str, Any] = {"source_predict_seconds": time.perf_counter() - start}
    record.update(score_source_outputs(probs, y))
    record["note"] = ""
    return record


def score_cache(
    features_dir: str | os.PathLike,
    prepared_dir: str | os.PathLike,
    names: Mapping[str, Any],
    source_run: str | os.PathLike | None = None,
    *,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Scores of one feature cache folder (``tlbench.features``) with the prepared
    dataset's train/val labels; ``names`` (dataset, backbone) identify the row.

    NCE and LEEP: when the cache's backbone was pretrained by a run (its key's
    ``run_model_sha256``), ``source_run`` is that run's folder (an error otherwise,
    and also when its ``model.keras`` is not the one the features came from); its
    classifier predicts the TRAIN images (``batch_size`` a batch; the time in
    ``source_predict_seconds``). For other weights they are NaN and ``note`` says
    why. The test split is never read.
    """
    from tlbench.datasets import load_prepared

    folder = Path(features_dir)
    key_file = folder / "key.json"
    if not key_file.is_file():
        raise FileNotFoundError(f"{folder} is not a feature cache (no key.json)")
    fields = json.loads(key_file.read_text())["fields"]
    data = load_prepared(prepared_dir, splits=("train", "val"))  # test: never read
    feats = {s: np.load(folder / f"{s}.npy") for s in ("train", "val")}
    labels = {s: data.split(s)[1] for s in ("train", "val")}
    for split in feats:
        if len(feats[split]) != len(labels[split]):
            raise ValueError(
                f"{folder}/{split}.npy has {len(feats[split])} rows, {prepared_dir}'s "
                f"{split} split {len(labels[split])} labels: the cache is of another dataset"
            )
    backbone = fields["backbone"]
    weights = backbone["weights"]
    record = {
        "dataset": names["dataset"],
        "backbone": names["backbone"],
        "backbone_arch": backbone["name"],
        "weights": weights_label(weights),
        "input_size": int(fields["input_size"]),
        "n_train": len(feats["train"]),
        "n_val": len(feats["val"]),
        "dim": int(feats["train"].shape[1]),
        "num_classes": data.num_classes,
    }
    record.update(score_features(feats["train"], labels["train"], feats["val"], labels["val"]))
    source = _source_scores(
        folder, backbone, record["weights"], source_run, data.split("train"), batch_size
    )
    notes = [record.pop("note"), source.pop("note")]
    record.update(source)
    record["note"] = "; ".join(n for n in notes if n)
    return record


def weights_label(identity: Any) -> str:
    """The scores table's ``weights`` of a feature cache key's weights identity
    (:func:`tlbench.features.weights_identity`): ``imagenet``, ``pretraining run``,
    ``weights file`` or ``random(seed N)``."""
    if isinstance(identity, str):
        return identity
    seed = random_seed(identity)
    if seed is not None:
        return random_label(seed)
    return WEIGHTS_LABELS[next(iter(identity))]


def scored_pairs(study: Any) -> list[tuple[str, str]]:
    """(dataset, backbone) pairs scored by the workflow: every pair of the study's matrix
    whose backbone's weights have an identity: pretrained (ImageNet, a file, a
    pretraining run) or the negative control ``{random: SEED}``. Random ``weights: none``
    backbones (drawn from each run's seed) have no cacheable features and are not scored."""
    return sorted(
        {
            (r.dataset, r.backbone)
            for r in study.runs
            if study.backbone_spec(r.backbone)["weights"] != "none"
        }
    )


def scores_table(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per scored (dataset, backbone) from the per-pair JSON records."""
    rows = [json.loads(Path(p).read_text()) for p in paths]
    return pd.DataFrame(rows).sort_values(["dataset", "backbone"]).reset_index(drop=True)


# --------------------------------------------------------------------------- the check


def measured_accuracy(study: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds of val and test accuracy of finished runs, per
    (dataset, backbone, strategy, augmentation), with the number of runs. With label
    budgets (tlbench.budget) only the runs on the whole training split (``all``): the
    scores are computed on it."""
    ok = study[study["status"] == "ok"]
    if "budget" in ok:
        ok = ok[ok["budget"].fillna("all") == "all"]
    keys = ["dataset", "backbone", "strategy", "augmentation"]
    return (
        ok.groupby(keys, sort=True)
        .agg(
            runs=("seed", "size"),
            val_accuracy=("val_accuracy", "mean"),
            test_accuracy=("test_accuracy", "mean"),
        )
        .reset_index()
    )


def _missing_note(score: str, missing: int, backbones: int) -> str:
    """The tau table's note on ``missing`` of ``backbones`` without ``score`` (NaN)."""
    why = "(the score table's note says why)"
    if missing == backbones:
        return f"undefined: none of the {backbones} backbone(s) has {score} {why}"
    verb = "has" if missing == 1 else "have"
    return f"{missing} of {backbones} backbones {verb} no {score} {why}"


def tau_table(scores: pd.DataFrame, study: pd.DataFrame) -> pd.DataFrame:
    """Weighted Kendall tau (``scipy.stats.weightedtau``, hyperbolic weights, the ranks
    of both orders averaged) of each score against each measured accuracy (mean over
    seeds) across the scored backbones, per dataset and (strategy, augmentation).

    ``weighted_tau`` is empty where it is undefined, and ``note`` says why: no
    backbone has the score (e.g. NCE, LEEP without source classifiers), fewer than
    :data:`MIN_BACKBONES` backbones, or a score or accuracy constant over them.
    Test-accuracy rows are a report of how well a score predicted; nothing is chosen
    by them (``note`` says so). A pilot study (``tlbench.tables.is_pilot``: its test
    splits sealed) has validation rows only.
    """
    from scipy.stats import weightedtau

    columns = [
        "dataset",
        "strategy",
        "augmentation",
        "score",
        "accuracy",
        "backbones",
        "weighted_tau",
        "note",
    ]
    from tlbench.analysis.tables import is_pilot

    accuracies = ("val_accuracy",) if is_pilot(study) else ACCURACIES  # pilot: test sealed
    measured = measured_accuracy(study).merge(scores, on=["dataset", "backbone"])
    rows = []
    for (dataset, strategy, augmentation), group in measured.groupby(
        ["dataset", "strategy", "augmentation"], sort=True
    ):
        for score in [s for s in SCORES if s in group]:
            for accuracy in accuracies:
                pair = group[[score, accuracy]].dropna()
                n = len(pair)
                tau, notes = math.nan, []
                missing = int(group[score].isna().sum())
                if missing:
                    notes.append(_missing_note(score, missing, len(group)))
                if missing == len(group):
                    tau = math.nan  # undefined, and the note above says why
                elif n < MIN_BACKBONES:
                    notes.append(
                        f"undefined: {n} scored backbone(s) with this accuracy, "
                        f"a rank correlation needs >= {MIN_BACKBONES}"
                    )
                elif pair[score].nunique() == 1 or pair[accuracy].nunique() == 1:
                    what = score if pair[score].nunique() == 1 else accuracy
                    notes.append(f"undefined: {what} is the same for all {n} backbones")
                else:
                    tau = float(weightedtau(pair[score], pair[accuracy]).statistic)
                if accuracy == "test_accuracy":
                    notes.append("test accuracy: reported only, nothing is chosen by it")
                rows.append(
                    [dataset, strategy, augmentation, score, accuracy, n, tau, "; ".join(notes)]
                )
    return pd.DataFrame(rows, columns=columns)


def tau_scatter(
    scores: pd.DataFrame,
    study: pd.DataFrame,
    path: str | os.PathLike,
    accuracy: str | None = None,
) -> Path:
    """Each score against the measured ``accuracy`` (mean over seeds; default test
    accuracy, validation accuracy in a pilot study), one panel per (dataset, score),
    one marker series per (strategy, augmentation) with its tau."""
    from matplotlib.figure import Figure

    from tlbench.analysis.tables import is_pilot
    from tlbench.report.figures.runs import _message_figure, _save

    if accuracy is None:
        accuracy = "val_accuracy" if is_pilot(study) else "test_accuracy"
    if accuracy not in ACCURACIES or (accuracy == "test_accuracy" and is_pilot(study)):
        raise ValueError(f"accuracy: {accuracy!r}; valid: {', '.join(ACCURACIES)}")
    measured = measured_accuracy(study).merge(scores, on=["dataset", "backbone"])
    if measured.empty:
        return _message_figure(
            path,
            "Transferability scores vs. measured accuracy",
            ["no finished runs of the scored backbones: nothing to compare"],
        )
    taus = tau_table(scores, study).set_index(
        ["dataset", "strategy", "augmentation", "score", "accuracy"]
    )["weighted_tau"]
    datasets = sorted(measured["dataset"].unique())
    fig = Figure(figsize=(3.6 * len(SCORES), 3.2 * len(datasets)), layout="constrained")
    axes = fig.subplots(len(datasets), len(SCORES), squeeze=False)
    for row, dataset in enumerate(datasets):
        of = measured[measured["dataset"] == dataset]
        for col, score in enumerate(SCORES):
            ax = axes[row][col]
            ax.set_title(f"{dataset}: {score}", fontsize=9)
            if of[score].isna().all():
                ax.text(
                    0.5,
                    0.5,
                    f"no {score} for any backbone\n(see the score table's note)",
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                    fontsize=8,
                )
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            for (strategy, augmentation), group in of.groupby(["strategy", "augmentation"]):
                tau = taus[(dataset, strategy, augmentation, score, accuracy)]
                label = f"{strategy}/{augmentation}: " + (
                    "tau undefined" if math.isnan(tau) else f"tau = {tau:+.2f}"
                )
                ax.plot(group[score], group[accuracy], "o", label=label)
                for _, r in group.iterrows():
                    ax.annotate(str(r["backbone"]), (r[score], r[accuracy]), fontsize=6)
            ax.set_xlabel(score)
            if col == 0:
                ax.set_ylabel(f"{accuracy.replace('_', ' ')} (mean over seeds)")
            ax.legend(fontsize=6)
    return _save(fig, path)


# --------------------------------------------------------------------------- prescreen


#: Columns of a prescreen table (one row per scored (dataset, backbone) of a block).
PRESCREEN_COLUMNS = ("dataset", "backbone", "score", "value", "rank", "keep", "kept", "reason")


def prescreen(scores: pd.DataFrame, score: str, keep: int) -> pd.DataFrame:
    """Which backbones a matrix block trains: per dataset, the ``keep`` best by ``score``.

    ``scores`` is the score table (:func:`scores_table`: one row per (dataset,
    backbone), computed from train and validation features only). Higher is
    better; **ties go to the backbone whose name sorts first** (a deterministic
    order that does not depend on the config's). A score that is undefined (NaN,
    :class:`DegenerateScore`) for any backbone is an error: ranking it last would
    prune that backbone for want of information rather than on its merits.

    Returns one row per (dataset, backbone) with the score's ``value``, ``rank``
    (1 = best) within its dataset, ``kept`` (bool) and the ``reason`` in words.
    """
    if score not in SCORES:
        raise ValueError(f"prescreen score: {score!r} is not a score; valid: {', '.join(SCORES)}")
    if isinstance(keep, bool) or not isinstance(keep, int | np.integer) or keep < 1:
        raise ValueError(f"prescreen keep: {keep!r} must be a positive integer")
    missing = [c for c in ("dataset", "backbone", score) if c not in scores.columns]
    if missing:
        raise ValueError(f"prescreen: the score table has no column(s) {missing}")
    if scores.duplicated(["dataset", "backbone"]).any():
        dupes = scores[scores.duplicated(["dataset", "backbone"], keep=False)]
        pairs = sorted(set(zip(dupes["dataset"], dupes["backbone"], strict=True)))
        raise ValueError(f"prescreen: (dataset, backbone) scored more than once: {pairs}")
    undefined = scores[scores[score].isna()]
    if len(undefined):
        first = undefined.iloc[0]
        note = first.get("note") if "note" in undefined else ""
        raise ValueError(
            f"prescreen: {score} is undefined (NaN) for backbone {first['backbone']!r} on "
            f"dataset {first['dataset']!r}"
            + (f" ({note})" if isinstance(note, str) and note else "")
            + "; prescreen by another score"
        )
    rows = []
    for dataset, group in scores.groupby("dataset", sort=True):
        if keep > len(group):
            raise ValueError(
                f"prescreen keep: {keep} is more than the {len(group)} backbone(s) scored on "
                f"dataset {dataset!r}"
            )
        ordered = group.assign(_value=group[score].astype(float)).sort_values(
            ["_value", "backbone"], ascending=[False, True], kind="mergesort"
        )
        for rank, (_, row) in enumerate(ordered.iterrows(), start=1):
            kept = rank <= keep
            verdict = "kept" if kept else "pruned"
            rows.append(
                {
                    "dataset": dataset,
                    "backbone": row["backbone"],
                    "score": score,
                    "value": float(row["_value"]),
                    "rank": rank,
                    "keep": int(keep),
                    "kept": kept,
                    "reason": f"{verdict}: {score} rank {rank} of {len(group)} "
                    f"(the {keep} best are trained)",
                }
            )
    return pd.DataFrame(rows, columns=list(PRESCREEN_COLUMNS))


def kept_backbones(table: pd.DataFrame | str | os.PathLike) -> dict[str, list[str]]:
    """The kept backbones per dataset of a prescreen table (a DataFrame or its CSV)."""
    if not isinstance(table, pd.DataFrame):
        table = pd.read_csv(table)
    kept = table[table["kept"].astype(bool)]
    return {d: sorted(g["backbone"]) for d, g in kept.groupby("dataset", sort=True)}
