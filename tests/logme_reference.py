"""A standalone transcription of the reference LogME, for comparison in tests only.

Transcribed from thuml/LogME, ``LogME.py`` (``truncated_svd`` and
``LogME._fit_fixed_point``, the default path of ``LogME.fit`` for classification), MIT
License, Copyright (c) 2021 THUML @ Tsinghua University; numba's ``@njit`` dropped, the
arithmetic kept step for step (its epsilon 1e-5 in the updates, its 11 iterations and its
stopping rule on ``t = alpha / beta``). It is not part of the package: the package's
LogME (tlbench.analysis.transferability.logme) is computed independently and compared
with this one where the two formulas agree (N > D).
"""

from __future__ import annotations

import numpy as np


def _truncated_svd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u, s, vh = np.linalg.svd(x.transpose() @ x)
    s = np.sqrt(s)
    u_times_sigma = x @ vh.transpose()
    k = np.sum((s > 1e-10) * 1)  # rank of f
    s = s.reshape(-1, 1)
    s = s[:k]
    vh = vh[:k]
    u = u_times_sigma[:, :k] / s.reshape(1, -1)
    return u, s, vh


def reference_logme(f: np.ndarray, y: np.ndarray) -> float:
    """LogME of features ``f`` (N x D) and integer labels ``y`` as thuml/LogME computes it."""
    f = f.astype(np.float64)
    n, d = f.shape
    if n > d:
        u, s, _ = _truncated_svd(f)
    else:
        u, s, _ = np.linalg.svd(f, full_matrices=False)
    s = s.reshape(-1, 1)
    sigma = s**2
    evidences = []
    for i in range(int(y.max() + 1)):
        y_ = (y == i).astype(np.float64).reshape(-1, 1)
        x = u.T @ y_
        x2 = x**2
        res_x2 = (y_**2).sum() - x2.sum()
        alpha, beta = 1.0, 1.0
        for _ in range(11):
            t = alpha / beta
            gamma = (sigma / (sigma + t)).sum()
            m2 = (sigma * x2 / ((t + sigma) ** 2)).sum()
            res2 = (x2 / ((1 + sigma / t) ** 2)).sum() + res_x2
            alpha = gamma / (m2 + 1e-5)
            beta = (n - gamma) / (res2 + 1e-5)
            t_ = alpha / beta
            if abs(t_ - t) / t <= 1e-3:
                break
        evidence = (
            d / 2.0 * np.log(alpha)
            + n / 2.0 * np.log(beta)
            - 0.5 * np.sum(np.log(alpha + beta * sigma))
            - beta / 2.0 * res2
            - alpha / 2.0 * m2
            - n / 2.0 * np.log(2 * np.pi)
        )
        evidences.append(evidence / n)
    return float(np.mean(evidences))
