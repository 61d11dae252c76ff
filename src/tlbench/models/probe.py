"""The linear probe: L2-regularised multinomial logistic regression on frozen features.

The protocol of Kornblith, Shlens & Le ("Do Better ImageNet Models Transfer
Better?", CVPR 2019): the backbone's pooled features are standardised (mean and
scale of the *training* data only), a scikit-learn ``LogisticRegression``
(L-BFGS; multinomial, scikit-learn's default for more than two classes) is
fitted for every inverse regularisation strength ``C`` of a log grid, and
``C`` is chosen by **cross-validation on the training split** (stratified
folds, :func:`cv_folds`), so the validation split plays no part in the choice
and the probe's validation accuracy compares honestly with other strategies'.
The test split is not an argument of :func:`fit_linear_probe`: nothing here can
be chosen by it.

The fitted model is returned *folded*: ``W, b`` such that
``softmax(x @ W + b)`` on the raw (unstandardised) features equals the fitted
model's ``predict_proba`` of the standardised ones, so a single Dense layer
with a softmax on top of the frozen backbone reproduces the probe.

Pure numpy and scikit-learn; no Keras.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The default grid of ``C`` (inverse L2 strength): 1e-6 ... 1e5, one value per decade.
DEFAULT_GRID = tuple(float(c) for c in np.logspace(-6, 5, 12))
#: L-BFGS iteration cap per fit.
MAX_ITER = 5000


#: Most cross-validation folds (fewer when a class has fewer training images).
MAX_FOLDS = 5


@dataclass(frozen=True)
class ProbeFit:
    """A fitted linear probe.

    ``C`` is the chosen inverse regularisation strength; ``grid`` the grid it was
    chosen from (ascending) by ``folds``-fold stratified cross-validation on the
    training split: ``cv_fold_accuracy[i]`` the held-out accuracy of ``grid[i]`` on
    each fold, ``cv_accuracy[i]`` its accuracy over all held-out images (correct /
    N), ``converged[i]`` whether L-BFGS met its tolerance within ``max_iter`` on every
    fold. With a one-value grid nothing is chosen: ``folds`` is 0 and the CV lists are
    empty. ``refit_converged``: the chosen C's fit on the whole training split.
    ``val_accuracy`` is that model's accuracy on the validation split (reported,
    not used). ``W`` (D x K) and ``b`` (K) act on the raw features, the
    standardisation folded in; column ``k`` is class ``k``. ``train_seconds``
    is the wall time of the whole fit (every fold of every C, the refit, validation).
    """

    C: float
    grid: tuple[float, ...]
    folds: int
    cv_accuracy: tuple[float, ...]
    cv_fold_accuracy: tuple[tuple[float, ...], ...]
    converged: tuple[bool, ...]
    refit_converged: bool
    val_accuracy: float
    W: np.ndarray
    b: np.ndarray
    train_seconds: float
    max_iter: int

    @property
    def num_classes(self) -> int:
        return int(self.W.shape[1])

    def logits(self, x: Any) -> np.ndarray:
        f = feature_matrix(x, "x")
        if f.shape[1] != self.W.shape[0]:
            raise ValueError(f"x: {f.shape[1]} features, the probe was fitted on {self.W.shape[0]}")
        return f @ self.W + self.b

    def predict_proba(self, x: Any) -> np.ndarray:
        z = self.logits(x)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, x: Any) -> np.ndarray:
        return np.argmax(self.logits(x), axis=1)

    def record(self) -> dict[str, Any]:
        """The probe's choice as plain JSON values (for ``metrics.json``)."""
        return {
            "probe_C": self.C,
            "probe_grid": list(self.grid),
            "probe_cv_folds": self.folds,
            "probe_cv_accuracy": list(self.cv_accuracy),
            "probe_cv_fold_accuracy": [list(a) for a in self.cv_fold_accuracy],
            "probe_converged": list(self.converged),
            "probe_refit_converged": self.refit_converged,
            "probe_val_accuracy": self.val_accuracy,
            "probe_max_iter": self.max_iter,
            "probe_train_seconds": self.train_seconds,
        }


def feature_matrix(x: Any, name: str, min_rows: int = 1) -> np.ndarray:
    """``x`` as a finite float64 N x D matrix with N >= ``min_rows``; else an error
    naming ``name`` (also :mod:`tlbench.analysis.transferability`'s check of its inputs)."""
    f = np.asarray(x, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < min_rows or f.shape[1] < 1:
        rows = f" with N >= {min_rows}" if min_rows > 1 else ""
        raise ValueError(f"{name}: expected an N x D feature matrix{rows}, got shape {f.shape}")
    if not np.isfinite(f).all():
        bad = int(np.count_nonzero(~np.isfinite(f)))
        raise ValueError(f"{name}: {bad} non-finite values (NaN or inf)")
    return f


def _labels(y: Any, n: int, name: str) -> np.ndarray:
    labels = np.asarray(y)
    if labels.shape != (n,):
        raise ValueError(
            f"{name}: expected {n} labels (one per feature row), got shape {labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name}: expected integer class labels, got dtype {labels.dtype}")
    if labels.min() < 0:
        raise ValueError(f"{name}: negative label {int(labels.min())}")
    return labels.astype(np.int64)


def check_grid(grid: Any) -> tuple[float, ...]:
    """The grid of ``C`` as an ascending tuple; a clear error naming a bad value."""
    if grid is None:
        return DEFAULT_GRID
    if isinstance(grid, str | bytes) or not hasattr(grid, "__iter__"):
        raise ValueError(f"grid: {grid!r} is not a sequence of C values")
    values = list(grid)
    if not values:
        raise ValueError("grid: [] is empty; give at least one C > 0")
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise ValueError(f"grid: {value!r} is not a number (C must be a finite number > 0)")
        c = float(value)
        if not math.isfinite(c) or c <= 0:
            raise ValueError(f"grid: C = {value!r} is not a finite number > 0")
        out.append(c)
    if len(set(out)) != len(out):
        dup = next(c for c in out if out.count(c) > 1)
        raise ValueError(f"grid: C = {dup!r} appears more than once")
    return tuple(sorted(out))


def _fold(scaler: Any, model: Any, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``W, b`` on raw features from a model fitted on ``(x - mean) / scale``."""
    coef = np.asarray(model.coef_, dtype=np.float64)  # K x D (1 x D for two classes)
    intercept = np.asarray(model.intercept_, dtype=np.float64)
    if coef.shape[0] == 1:  # binary: p(1) = sigmoid(t) = softmax([-t/2, t/2])[1]
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    if coef.shape[0] != num_classes:
        raise AssertionError(f"{coef.shape[0]} coefficient rows for {num_classes} classes")
    w = (coef / scaler.scale_).T  # D x K
    b = intercept - scaler.mean_ @ w
    return w, b


def cv_folds(y: np.ndarray, grid: tuple[float, ...]) -> int:
    """Folds of the stratified cross-validation that chooses C: ``min(MAX_FOLDS, the
    smallest class count)``, so every fold holds out at least one image of every class;
    0 for a one-value grid (nothing to choose). A class with a single training image
    cannot be held out and also trained on: an error naming it (give a one-value grid)."""
    if len(grid) == 1:
        return 0
    classes, counts = np.unique(y, return_counts=True)
    smallest = int(counts.min())
    if smallest < 2:
        lonely = classes[counts < 2].tolist()
        raise ValueError(
            f"y_train: class(es) {lonely} have a single training image: choosing C by "
            "cross-validation needs at least 2 per class; give strategy.params.grid one "
            "value of C to fit without choosing"
        )
    return min(MAX_FOLDS, smallest)


def _fit(x: np.ndarray, y: np.ndarray, c: float, seed: int, max_iter: int) -> tuple[Any, bool]:
    """A standardise-then-logistic-regression pipeline fitted on ``x, y``, and whether
    L-BFGS converged (fewer iterations than ``max_iter``)."""
    # deferred: scikit-learn on first fit; the parse-time check imports the strategies
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = LogisticRegression(solver="lbfgs", C=c, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # recorded from n_iter_
        pipeline = make_pipeline(StandardScaler(), model).fit(x, y)
    return pipeline, bool(np.all(model.n_iter_ < max_iter))


def fit_linear_probe(
    x_train: Any,
    y_train: Any,
    x_val: Any,
    y_val: Any,
    grid: Any = None,
    seed: int = 0,
    max_iter: int = MAX_ITER,
    num_classes: int | None = None,
    blas_threads: int = 1,
) -> ProbeFit:
    """Fit the linear probe on the training split, choosing ``C`` by cross-validation there.

    For every ``C`` of ``grid`` (default :data:`DEFAULT_GRID`, 1e-6 ... 1e5) a
    ``StandardScaler`` + ``LogisticRegression(solver="lbfgs", C=C)`` pipeline is
    fitted on each training fold of a stratified ``k``-fold split of the TRAINING
    split (:func:`cv_folds`: ``k = min(5, smallest class count)``; shuffled with
    ``seed``) and scored on its held-out fold; the chosen ``C`` has the most
    held-out images right over all folds, **ties going to the smaller C** (the
    stronger regularisation). The validation split plays no part in the choice: it
    is scored once, by the chosen model (``val_accuracy``).

    The returned model is the chosen ``C``'s fit on the whole training split
    (scaler included), folded into ``W, b`` on the raw features. Classes are the
    integers ``0 .. K-1``, ``K = num_classes`` (default: max label + 1 over both
    splits); every class must occur in the training split. ``seed`` is also passed
    as ``random_state``. The fits run with ``blas_threads`` BLAS threads (threadpoolctl).
    """
    # deferred: scikit-learn on first fit; the parse-time check imports the strategies
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    values = check_grid(grid)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter: {max_iter!r} must be a positive integer")
    if isinstance(blas_threads, bool) or not isinstance(blas_threads, int) or blas_threads < 1:
        raise ValueError(f"blas_threads: {blas_threads!r} must be a positive integer")
    xt = feature_matrix(x_train, "x_train")
    xv = feature_matrix(x_val, "x_val")
    if xv.shape[1] != xt.shape[1]:
        raise ValueError(f"x_val: {xv.shape[1]} features, x_train {xt.shape[1]}")
    yt = _labels(y_train, len(xt), "y_train")
    yv = _labels(y_val, len(xv), "y_val")
    seen = int(max(yt.max(), yv.max())) + 1
    if num_classes is None:
        num_classes = seen
    elif isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < seen:
        raise ValueError(
            f"num_classes: {num_classes!r} must be an integer >= {seen} (the largest label + 1)"
        )
    missing = sorted(set(range(num_classes)) - set(yt.tolist()))
    if missing:
        raise ValueError(
            f"y_train: class(es) {missing} never occur in the training split "
            f"(classes are 0..{num_classes - 1}); a probe cannot learn them"
        )
    if num_classes < 2:
        raise ValueError(f"y_train: a probe needs at least 2 classes, got {num_classes}")

    folds = cv_folds(yt, values)
    start = time.perf_counter()
    fold_accuracy, pooled, converged = [], [], []
    # One BLAS thread: each fit is small (N x D, a few hundred to a few thousand rows), and
    # a multi-threaded BLAS beside busy cores spins: the 12 fits of hymenoptera (221 x 1280)
    # took 2.5 s with 2 threads and 0.2 s with 1 on a loaded 2-core EPYC.
    with threadpool_limits(limits=blas_threads, user_api="blas"):
        if folds:
            splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(xt, yt))
            for c in values:
                correct, ok = [], True
                for train_rows, held_rows in splits:
                    model, fold_ok = _fit(xt[train_rows], yt[train_rows], c, seed, max_iter)
                    correct.append(int(np.sum(model.predict(xt[held_rows]) == yt[held_rows])))
                    ok = ok and fold_ok
                fold_accuracy.append(
                    tuple(k / len(rows) for k, (_, rows) in zip(correct, splits, strict=True))
                )
                pooled.append(sum(correct))  # integer counts: exact ties
                converged.append(ok)
        best = int(np.argmax(pooled)) if folds else 0  # the first maximum: the smallest C
        model, refit_converged = _fit(xt, yt, values[best], seed, max_iter)
        val_correct = int(np.sum(model.predict(xv) == yv))
    scaler, classifier = model[0], model[-1]
    w, b = _fold(scaler, classifier, num_classes)
    seconds = time.perf_counter() - start
    return ProbeFit(
        C=values[best],
        grid=values,
        folds=folds,
        cv_accuracy=tuple(k / len(yt) for k in pooled),
        cv_fold_accuracy=tuple(fold_accuracy),
        converged=tuple(converged),
        refit_converged=refit_converged,
        val_accuracy=val_correct / len(yv),
        W=w,
        b=b,
        train_seconds=seconds,
        max_iter=max_iter,
    )
