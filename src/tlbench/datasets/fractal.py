"""``fractal``: a formula-driven source dataset after FractalDB (Kataoka et al., 2020).

Each class is a random iterated function system (IFS): 2-4 affine maps
``x -> A x + b`` with parameters drawn uniformly from [-1, 1], sampled
deterministically from ``[seed, class index]``. A map whose largest singular
value exceeds ``max_contraction`` is scaled down to it (so the attractor is
bounded); maps are chosen with probability proportional to ``|det A|``. An IFS
is rejected and redrawn when it is degenerate: its attractor, drawn with the
chaos game and scaled isotropically onto a 32x32 grid, must fill a fraction of
the cells within ``fill_range`` (a line or a point fills too little, a blob
too much).

Every image renders its class's IFS with its own jitter: each parameter is
perturbed (``param_jitter``), the picture is rotated (any angle), mirrored at
random, scaled (0.75-1.0 of the frame) and shifted; each map gets a random
colour. Rendering is the chaos game, vectorised over all images of a class and
``chains`` parallel chains (``points`` points per image after a burn-in); the
points go into a 2D histogram whose brightness is ``log(1 + count)``
normalised per image, coloured by the mean colour of the maps that hit each
pixel, on black. Deterministic given the seed; generated at the target size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tlbench.datasets.base import (
    Option,
    RawSplits,
    fraction,
    generated_splits,
    positive,
    register,
)
from tlbench.datasets.images import Size

_BURN_IN = 20


def _contract(params: np.ndarray, max_sv: float) -> np.ndarray:
    """Scale the linear part of maps ``params[..., 6]`` so each spectral norm <= ``max_sv``."""
    linear = params[..., :4].reshape(*params.shape[:-1], 2, 2)
    sv = np.linalg.norm(linear, ord=2, axis=(-2, -1))
    scale = np.minimum(1.0, max_sv / np.maximum(sv, 1e-12))
    out = params.copy()
    out[..., :4] *= scale[..., None]
    return out


def _probabilities(params: np.ndarray) -> np.ndarray:
    """Map probabilities proportional to |det A| (floored so no map is never used)."""
    det = np.abs(params[..., 0] * params[..., 3] - params[..., 1] * params[..., 2])
    det = np.maximum(det, 0.02)
    return det / det.sum(axis=-1, keepdims=True)


def chaos_game(
    params: np.ndarray, probs: np.ndarray, steps: int, chains: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Run the chaos game for a batch of IFS.

    ``params``: ``(n, m, 6)`` maps ``[a, b, c, d, e, f]`` with ``x' = a x + b y + e``,
    ``y' = c x + d y + f``; ``probs``: ``(n, m)``. Returns points ``(n, steps*chains, 2)``
    and the index of the map that produced each point ``(n, steps*chains)``.
    """
    n, m, _ = params.shape
    cumulative = np.cumsum(probs, axis=1)
    cumulative[:, -1] = 1.0
    xy = rng.uniform(-1, 1, (n, chains, 2))
    rows = np.arange(n)[:, None]
    points = np.empty((steps, n, chains, 2))
    which = np.empty((steps, n, chains), dtype=np.int64)
    for t in range(_BURN_IN + steps):
        u = rng.random((n, chains))
        k = (u[:, :, None] > cumulative[:, None, :]).sum(axis=2)
        k = np.minimum(k, m - 1)
        p = params[rows, k]  # (n, chains, 6)
        x, y = xy[..., 0], xy[..., 1]
        xy = np.stack(
            (p[..., 0] * x + p[..., 1] * y + p[..., 4], p[..., 2] * x + p[..., 3] * y + p[..., 5]),
            axis=-1,
        )
        if t >= _BURN_IN:
            points[t - _BURN_IN] = xy
            which[t - _BURN_IN] = k
    points = points.transpose(1, 0, 2, 3).reshape(n, steps * chains, 2)
    which = which.transpose(1, 0, 2).reshape(n, steps * chains)
    return points, which


def _normalise(points: np.ndarray) -> np.ndarray:
    """Centre each image's points and scale isotropically so the 1-99% extent is 1."""
    lo = np.percentile(points, 1, axis=1, keepdims=True)
    hi = np.percentile(points, 99, axis=1, keepdims=True)
    extent = np.maximum((hi - lo).max(axis=2, keepdims=True), 1e-9)
    return (points - (lo + hi) / 2) / extent


def filling(points: np.ndarray, grid: int = 32) -> np.ndarray:
    """Fraction of ``grid x grid`` cells hit by each image's normalised points."""
    unit = _normalise(points) + 0.5
    cells = np.clip((unit * grid).astype(np.int64), 0, grid - 1)
    flat = cells[..., 1] * grid + cells[..., 0] + np.arange(len(points))[:, None] * grid * grid
    hits = np.bincount(flat.ravel(), minlength=len(points) * grid * grid)
    return (hits.reshape(len(points), -1) > 0).mean(axis=1)


def sample_ifs(
    seed: int,
    class_index: int,
    *,
    max_contraction: float = 0.9,
    fill_range: tuple[float, float] = (0.12, 0.6),
    max_tries: int = 1000,
) -> np.ndarray:
    """Draw the IFS of class ``class_index``: ``(m, 6)`` map parameters, ``m`` in 2..4."""
    rng = np.random.default_rng([seed, class_index, 0xF4AC])
    for _ in range(max_tries):
        m = int(rng.integers(2, 5))
        params = _contract(rng.uniform(-1, 1, (m, 6)), max_contraction)
        probe_rng = np.random.default_rng([seed, class_index, 1])
        pts, _ = chaos_game(params[None], _probabilities(params)[None], 64, 64, probe_rng)
        fill = filling(pts)[0]
        if fill_range[0] <= fill <= fill_range[1] and np.isfinite(pts).all():
            return params
    raise RuntimeError(
        f"no IFS for class {class_index} with filling in {fill_range} after {max_tries} tries"
    )


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV (all in [0, 1]) to RGB in [0, 1]; returns shape ``h.shape + (3,)``."""
    i = np.floor(h * 6).astype(np.int64) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack(
        [
            np.stack([v, t, p], -1),
            np.stack([q, v, p], -1),
            np.stack([p, v, t], -1),
            np.stack([p, q, v], -1),
            np.stack([t, p, v], -1),
            np.stack([v, p, q], -1),
        ]
    )
    return np.take_along_axis(table, i[None, ..., None], axis=0)[0]


def render_class(
    ifs: np.ndarray,
    count: int,
    size: Size,
    rng: np.random.Generator,
    *,
    points: int = 4096,
    chains: int = 64,
    param_jitter: float = 0.05,
    max_contraction: float = 0.9,
) -> np.ndarray:
    """Render ``count`` jittered images of one IFS; returns uint8 ``count x H x W x 3``."""
    height, width = size
    m = len(ifs)
    params = ifs[None] * (1 + rng.normal(0, param_jitter, (count, m, 6)))
    params = _contract(params, max_contraction)
    steps = max(1, -(-points // chains))
    pts, which = chaos_game(params, _probabilities(params), steps, chains, rng)
    unit = _normalise(pts)
    angle = rng.uniform(0, 2 * np.pi, count)
    mirror = np.where(rng.random(count) < 0.5, -1.0, 1.0)
    scale = rng.uniform(0.75, 1.0, count)
    shift = rng.uniform(-0.1, 0.1, (count, 2)) * (1 - scale[:, None])
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    x, y = unit[..., 0] * mirror[:, None], unit[..., 1]
    u = (cos * x - sin * y) * scale[:, None] + 0.5 + shift[:, :1]
    v = (sin * x + cos * y) * scale[:, None] + 0.5 + shift[:, 1:]
    ix, iy = np.floor(u * width).astype(np.int64), np.floor(v * height).astype(np.int64)
    inside = (ix >= 0) & (ix < width) & (iy >= 0) & (iy < height)
    flat = (np.arange(count)[:, None] * height + iy) * width + ix
    flat, which = flat[inside], which[inside]
    colours = _hsv_to_rgb(
        rng.random((count, m)), rng.uniform(0.5, 1.0, (count, m)), rng.uniform(0.7, 1.0, (count, m))
    )
    point_colour = colours[(flat // (height * width)), which]  # (P, 3)
    total = count * height * width
    hits = np.bincount(flat, minlength=total).astype(np.float64)
    rgb = np.stack([np.bincount(flat, point_colour[:, c], minlength=total) for c in range(3)], -1)
    mean_colour = rgb / np.maximum(hits, 1)[:, None]
    brightness = np.log1p(hits).reshape(count, -1)
    brightness /= np.maximum(brightness.max(axis=1, keepdims=True), 1e-9)
    image = mean_colour * brightness.reshape(-1)[:, None]
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8).reshape(count, height, width, 3)


def generate(
    num_classes: int,
    per_class: int,
    size: Size,
    seed: int,
    *,
    points: int = 4096,
    chains: int = 64,
    param_jitter: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Render the whole fractal dataset: ``(uint8 N x H x W x 3, int64 labels)``."""
    if num_classes < 2 or per_class < 1 or points < 1 or chains < 1:
        raise ValueError(
            "fractal needs num_classes >= 2, per_class >= 1, points >= 1, chains >= 1; got "
            f"{num_classes}, {per_class}, {points}, {chains}"
        )
    images = np.empty((num_classes * per_class, size[0], size[1], 3), dtype=np.uint8)
    for c in range(num_classes):
        ifs = sample_ifs(seed, c)
        rng = np.random.default_rng([seed, c, 2])
        images[c * per_class : (c + 1) * per_class] = render_class(
            ifs, per_class, size, rng, points=points, chains=chains, param_jitter=param_jitter
        )
    return images, np.repeat(np.arange(num_classes, dtype=np.int64), per_class)


@register(
    "fractal",
    class_count=lambda options: options["num_classes"],
    num_classes=Option(32, (int,), "number of IFS classes", positive),
    per_class=Option(100, (int,), "images per class", positive),
    points=Option(4096, (int,), "chaos-game points per image", positive),
    chains=Option(64, (int,), "parallel chaos-game chains per image", positive),
    param_jitter=Option(0.05, (float, int), "relative std of the per-image IFS perturbation"),
    val_fraction=Option(0.1, (float,), "validation fraction per class", fraction),
    test_fraction=Option(0.1, (float,), "test fraction per class", fraction),
)
def load_fractal(options: dict[str, Any], workdir: Path, seed: int, size: Size) -> RawSplits:
    """Generate the fractal dataset and split it stratified (test, then validation)."""
    images, labels = generate(
        options["num_classes"],
        options["per_class"],
        size,
        seed,
        points=options["points"],
        chains=options["chains"],
        param_jitter=float(options["param_jitter"]),
    )
    classes = [f"fractal_{c:03d}" for c in range(options["num_classes"])]
    return generated_splits(images, labels, classes, seed, options, "generated (IFS chaos game)")
