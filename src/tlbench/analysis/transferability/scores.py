"""Transferability scores: rank backbones from their frozen features, without training.

Every score is computed from a backbone's pooled features of the target
dataset (the feature cache of :mod:`tlbench.training.feature_cache`) and the target labels;
a higher score predicts a better transfer.

* LogME (You et al., ICML 2021), in :mod:`tlbench.analysis.transferability.logme`:
  the maximised log marginal evidence of a Bayesian linear model from the features
  to each one-hot label column, per sample, averaged over classes.
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

Scoring a feature cache (:mod:`tlbench.analysis.transferability.cache`), the scores
against the study's measured accuracies (:mod:`tlbench.analysis.transferability.tau`)
and prescreening (:mod:`tlbench.analysis.transferability.prescreen`) are beside this
module; the figure is :mod:`tlbench.report.figures.transferability`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tlbench.models.probe import feature_matrix

#: Neighbours of the k-NN probe (fixed, not tuned: a tuned k would be chosen on
#: the validation split it is scored on).
KNN_K = 5
LIMIT = 1e12
#: Normalised feature rows that all lie within this of their mean point the same way
#: (to rounding): the k-NN score is degenerate there.
DIRECTION_TOL = 1e-12
#: Scores of a backbone's frozen features (the feature cache).
FEATURE_SCORES = ("logme", "hscore", "hscore_shrunk", "knn_accuracy")
#: Scores of a source classifier's outputs on the target's train images.
SOURCE_SCORES = ("nce", "leep")
#: Score columns of the workflow's table, in order (higher = predicts better transfer).
SCORES = FEATURE_SCORES + SOURCE_SCORES


class DegenerateScore(ValueError):
    """A score that is defined but carries no information on these features."""


# --------------------------------------------------------------------------- inputs


def _features(features: Any, name: str = "features") -> np.ndarray:
    return feature_matrix(features, name, min_rows=2)


def label_array(labels: Any, n: int, name: str = "labels") -> np.ndarray:
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
    y = label_array(labels, f.shape[0])
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
    # deferred: scikit-learn on first use; the parse-time check imports SCORES from here
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
    """Accuracy on val of a k-NN classifier fitted on train (cosine: L2-normalised features).

    The rows are normalised here (:func:`unit_rows`), at any scale: scikit-learn's
    ``normalize`` leaves rows of norm below 10 eps (2e-15) as they are, which turned
    the cosine k-NN of a deep random-init backbone's features (about 1e-17) into a
    Euclidean one. Features whose directions all agree to rounding (a random-init
    MobileNet's on digits: normalised rows within 1e-16 of each other) have no
    neighbours to speak of: :class:`DegenerateScore`.
    """
    # deferred: scikit-learn on first use; the parse-time check imports SCORES from here
    from sklearn.neighbors import KNeighborsClassifier

    train = _features(train_features, "train_features")
    val = _features(val_features, "val_features")
    if train.shape[1] != val.shape[1]:
        raise ValueError(
            f"val_features: {val.shape[1]} dimensions, train_features {train.shape[1]}"
        )
    y_train = label_array(train_labels, len(train), "train_labels")
    y_val = np.asarray(val_labels)
    if y_val.shape != (len(val),):
        raise ValueError(f"val_labels: expected shape ({len(val)},), got {y_val.shape}")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= len(train):
        raise ValueError(f"k: {k!r} must be an integer in 1..{len(train)} (the train samples)")
    unit_train, unit_val = unit_rows(train), unit_rows(val)
    both = np.vstack([unit_train, unit_val])
    spread = float(np.abs(both - both.mean(axis=0)).max())
    if spread <= DIRECTION_TOL:
        raise DegenerateScore(
            f"knn_accuracy: every feature row points the same way to within {spread:.2g} "
            "(normalised), below rounding: the neighbours would be chosen by rounding noise"
        )
    knn = KNeighborsClassifier(n_neighbors=k).fit(unit_train, y_train)
    return float(knn.score(unit_val, y_val))


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Each row divided by its L2 norm, computed after dividing by the row's largest
    magnitude (no underflow or overflow at any scale); all-zero rows stay zero."""
    peak = np.abs(x).max(axis=1, keepdims=True)
    scaled = np.divide(x, peak, out=np.zeros_like(x), where=peak > 0)
    norm = np.linalg.norm(scaled, axis=1, keepdims=True)
    return np.divide(scaled, norm, out=np.zeros_like(x), where=norm > 0)


# --------------------------------------------------------------------------- NCE, LEEP


def probability_array(source_probs: Any, n: int) -> np.ndarray:
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
    y = label_array(target_labels, len(np.asarray(target_labels)), "target_labels")
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
    y = label_array(target_labels, len(np.asarray(target_labels)), "target_labels")
    theta = probability_array(source_probs, len(y))
    onehot = np.eye(y.max() + 1)[y]
    joint = theta.T @ onehot / len(y)  # P(z, y)
    marginal = joint.sum(axis=1, keepdims=True)  # P(z)
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    likelihood = np.einsum("nz,nz->n", theta, conditional[:, y].T)
    return float(np.mean(np.log(likelihood)))
