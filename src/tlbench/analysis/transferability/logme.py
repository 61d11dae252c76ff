"""LogME (You et al., ICML 2021): the maximised log marginal evidence of a Bayesian linear
model from a backbone's features to each one-hot label column, per sample, averaged over
classes (:func:`logme`; one target column: :func:`log_evidence`).

The model is ``y = F w + noise`` with ``w ~ N(0, I_D / alpha)`` and noise ``N(0, I_N / beta)``,
so ``y ~ N(0, I / beta + F F^T / alpha)``; its evidence is maximised over alpha and beta.
The value is the evidence formula of the reference implementation (thuml/LogME),
``D/2 log alpha + N/2 log beta - 1/2 log|A| - beta/2 |y - F m|^2 - alpha/2 |m|^2
- N/2 log 2 pi`` with ``A = alpha I_D + beta F^T F``, computed *exactly*: ``log|A|`` keeps
the ``D - rank(F)`` zero-eigenvalue terms ``log alpha`` that the reference's fixed-point
path drops when N < D (which inflates its few-shot scores).

How the maximum is found holds at any scale of the features and for N < D:

* **Scale-free.** Scaling F by c maps the model at (alpha, beta) to the one at
  (c^2 alpha, beta): the maximised evidence does not depend on c. F is divided by its
  root-mean-square entry before anything is computed, and every tolerance is relative,
  so features of magnitude 1e-17 (a deep random-init backbone's) score as they would at
  magnitude 1.
* **Profiled in the SVD basis.** With ``sigma_i`` the nonzero eigenvalues of ``F F^T``
  (thin SVD of F; N > D: the D x D Gram matrix, as the reference does), ``z_i`` the
  coordinates of y on the matching left singular vectors and ``t = alpha / beta``, the
  best beta for a given t is ``N / Q(t)``, ``Q(t) = sum z_i^2 t / (t + sigma_i) + |y|^2``
  outside span(F), and the evidence is a function of ``log t`` alone. It is evaluated on
  a grid of ``log t`` spanning the spectrum with :data:`MARGIN` on both sides, together
  with its two limits: ``t -> inf`` (alpha = inf, w = 0: the labels-only value) and, when
  rank(F) = N (N <= D), ``t -> 0`` (beta = inf: y fitted without noise, which separable
  classes with N < D can reach). An interior maximum is refined to machine precision by
  a root of the stationarity condition ``gamma Q = N t |m|^2``, which is the fixed point
  of MacKay's updates ``alpha = gamma / |m|^2``, ``beta = (N - gamma) / |y - F m|^2``.

The search cannot run out of iterations; should the refinement nevertheless fail,
:class:`NoConvergence` is raised and the score table records NaN with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tlbench.analysis.transferability.scores import label_array
from tlbench.models.probe import feature_matrix

#: Natural-log margin of the grid of log t beyond the spectrum's ends: there
#: ``sigma / t`` is below or above e^{-MARGIN} ~ 1e-15 for every eigenvalue, so the
#: evidence equals its limit to double precision.
MARGIN = 35.0
#: An interior maximum less than TIE per sample above a limit of the evidence is that
#: limit (the two differ by rounding, or by less than any score could show).
TIE = 1e-10
#: Step of the grid of log t (each eigenvalue's terms are sigmoids of width ~1 in log t).
STEP = 0.25


class NoConvergence(ArithmeticError):
    """The maximisation of the evidence did not reach its tolerance: the feature scores
    record LogME as NaN with this reason (:func:`tlbench.analysis.transferability.cache.score_features`)."""


@dataclass(frozen=True)
class Evidence:
    """The maximised evidence of ``y = F w + noise``, ``w ~ N(0, I/alpha)``, noise ``N(0, I/beta)``.

    ``log_evidence`` is ``log p(y | F, alpha, beta)`` (a total over the N samples) at
    the maximising ``alpha, beta`` (in the units of the features given); ``gamma`` the
    effective number of parameters ``sum_i beta sigma_i / (alpha + beta sigma_i)``.
    Where the maximum is a limit, one of ``alpha``, ``beta`` is ``inf`` and
    ``log_evidence`` the supremum: the noise-only model (alpha = inf, w = 0) or the
    noiseless one (beta = inf, y = F w exactly; possible only when rank F = N).
    ``evaluations``: evidence evaluations of the search.
    """

    log_evidence: float
    alpha: float
    beta: float
    gamma: float
    evaluations: int


@dataclass(frozen=True)
class Spectrum:
    """F divided by ``scale`` (its root-mean-square entry): the nonzero eigenvalues
    ``sigma`` of its ``F F^T`` and the N x k matrix ``left`` of the matching left
    singular vectors."""

    n: int
    d: int
    scale: float
    sigma: np.ndarray
    left: np.ndarray

    @property
    def full_rank(self) -> bool:
        """Whether the left singular vectors span R^N (rank F = N, so N <= D)."""
        return len(self.sigma) == self.n


def spectrum(features: Any) -> Spectrum:
    """The features' scaled spectrum (see :class:`Spectrum`); relative rank tolerances."""
    f = feature_matrix(features, "features", min_rows=2)
    n, d = f.shape
    scale = float(np.sqrt(np.mean(f**2)))
    if scale == 0.0:  # all-zero features explain nothing
        return Spectrum(n, d, 0.0, np.zeros(0), np.zeros((n, 0)))
    g = f / scale
    eps = np.finfo(np.float64).eps
    if n <= d:
        u, s, _ = np.linalg.svd(g, full_matrices=False)
        keep = s > s[0] * max(n, d) * eps
        return Spectrum(n, d, scale, s[keep] ** 2, u[:, keep])
    # N > D: the D x D Gram matrix instead of an N x D U (N may be tens of thousands)
    sigma, v = np.linalg.eigh(g.T @ g)
    keep = sigma > sigma.max() * max(n, d) * eps
    left = (g @ v[:, keep]) / np.sqrt(sigma[keep])
    return Spectrum(n, d, scale, sigma[keep], left)


class _Profile:
    """The evidence of one target as a function of ``u = log t`` (beta profiled out)."""

    def __init__(self, spec: Spectrum, y: np.ndarray):
        self.n, self.sigma = spec.n, spec.sigma
        self.z2 = (spec.left.T @ y) ** 2
        self.yy = float(y @ y)
        # |y|^2 outside span(F): exactly 0 when the left vectors span R^N, else computed
        # directly (not |y|^2 - sum z^2, whose rounding noise would be a fake residual)
        outside = 0.0
        if not spec.full_rank:
            outside = float(np.sum((y - spec.left @ (spec.left.T @ y)) ** 2))
        # at the rounding level of the projection: y lies in span(F)
        eps = np.finfo(np.float64).eps
        self.outside = outside if outside > max(spec.n, spec.d) * eps * self.yy else 0.0
        self.evaluations = 0
        self._const = -0.5 * self.n * (math.log(2 * math.pi) + 1.0)

    def _ratio(self, u: float) -> np.ndarray:
        return self.sigma * math.exp(-u)  # sigma / t

    def q(self, u: float) -> float:
        return float(np.sum(self.z2 / (1.0 + self._ratio(u)))) + self.outside

    def values(self, u: np.ndarray) -> np.ndarray:
        """The evidence at every ``u`` of a 1-d array (one row of sigma / t per u)."""
        self.evaluations += len(u)
        r = self.sigma[None, :] * np.exp(-u)[:, None]
        q = np.sum(self.z2 / (1.0 + r), axis=1) + self.outside
        return self._const - 0.5 * self.n * np.log(q / self.n) - 0.5 * np.sum(np.log1p(r), axis=1)

    def value(self, u: float) -> float:
        return float(self.values(np.array([u]))[0])

    def slope(self, u: float) -> float:
        """A positive multiple of d value / du: ``gamma Q - N t |m|^2``."""
        r = self._ratio(u)
        gamma = float(np.sum(r / (1.0 + r)))
        return gamma * self.q(u) - self.n * float(np.sum(self.z2 * r / (1.0 + r) ** 2))

    def noise_only(self) -> float:
        return self._const - 0.5 * self.n * math.log(self.yy / self.n)

    def noiseless(self) -> float:
        """The limit t -> 0 (finite only when rank F = N)."""
        mean = float(np.sum(self.z2 / self.sigma)) / self.n
        return self._const - 0.5 * self.n * math.log(mean) - 0.5 * float(np.sum(np.log(self.sigma)))


def _evidence(spec: Spectrum, y: np.ndarray) -> Evidence:
    """Maximise the evidence of one target column over alpha, beta (see the module doc)."""
    # deferred: scipy's optimisers on first use; the parse-time check imports SCORES
    from scipy.optimize import brentq, minimize_scalar

    if not np.any(y):
        raise ValueError("y: the target is all zeros; its evidence has no maximum")
    profile = _Profile(spec, y)
    n, scale2 = spec.n, spec.scale**2
    top = profile.noise_only()
    if len(spec.sigma) == 0 or not np.any(profile.z2):  # y orthogonal to every feature
        return Evidence(top, math.inf, n / profile.yy, 0.0, profile.evaluations)
    if profile.outside == 0.0 and not spec.full_rank:
        raise NoConvergence(
            f"LogME: the evidence has no finite maximum: the target lies in the span of "
            f"features of rank {len(spec.sigma)} < N = {n} (duplicate samples?), so the "
            "noiseless model's density grows without bound"
        )
    lo = math.log(float(spec.sigma.min())) - MARGIN
    if profile.outside > 0.0:  # the maximum lies above t ~ outside / (y^T (F F^T)^+ y)
        lo = min(lo, math.log(profile.outside / float(np.sum(profile.z2 / spec.sigma))) - MARGIN)
    hi = math.log(float(spec.sigma.max())) + MARGIN
    grid = np.linspace(lo, hi, int(math.ceil((hi - lo) / STEP)) + 1)
    values = profile.values(grid)
    best = int(np.argmax(values))
    bottom = profile.noiseless() if spec.full_rank else -math.inf
    # the grid's ends are at the limits to double precision, and an interior maximum
    # within rounding (TIE per sample) of a limit is that limit: the supremum
    tie = TIE * n
    if best == len(grid) - 1 or (values[best] <= top + tie and top >= bottom):
        return Evidence(top, math.inf, n / profile.yy, 0.0, profile.evaluations)
    if spec.full_rank and (best == 0 or values[best] <= bottom + tie):
        mean = float(np.sum(profile.z2 / spec.sigma)) / n
        return Evidence(bottom, scale2 / mean, math.inf, float(n), profile.evaluations)
    if best == 0:
        raise NoConvergence(
            f"LogME: the evidence's maximum lies below the search grid (log t < {lo:.3g})"
        )
    left, right = grid[best - 1], grid[best + 1]
    try:
        if profile.slope(left) > 0 > profile.slope(right):
            u = brentq(profile.slope, left, right, xtol=1e-14, rtol=4 * np.finfo(float).eps)
        else:  # several sign changes inside the bracket: maximise the value itself
            found = minimize_scalar(
                lambda x: -profile.value(x),
                bounds=(left, right),
                method="bounded",
                options={"xatol": 1e-12},
            )
            if not found.success:
                raise RuntimeError(found.message)
            u = float(found.x)
    except RuntimeError as error:
        raise NoConvergence(
            f"LogME: the refinement of the maximum did not converge ({error})"
        ) from None
    value = profile.value(u)
    t = math.exp(u)
    beta = n / profile.q(u)
    r = spec.sigma / t
    gamma = float(np.sum(r / (1.0 + r)))
    return Evidence(value, t * beta * scale2, beta, gamma, profile.evaluations)


def log_evidence(features: Any, y: Any) -> Evidence:
    """The maximised log evidence of the Bayesian linear model from ``features`` (N x D)
    to the real target ``y`` (N)."""
    spec = spectrum(features)
    target = np.asarray(y, dtype=np.float64)
    if target.shape != (spec.n,) or not np.isfinite(target).all():
        raise ValueError(f"y: expected {spec.n} finite values, got shape {target.shape}")
    return _evidence(spec, target)


def logme(features: Any, labels: Any) -> float:
    """LogME: the maximised log evidence per sample, averaged over the one-hot label columns."""
    spec = spectrum(features)
    y = label_array(labels, spec.n)
    values = [_evidence(spec, (y == c).astype(np.float64)).log_evidence for c in np.unique(y)]
    return float(np.mean(values) / spec.n)
