"""Frozen-backbone feature cache.

A frozen backbone without augmentation maps each image to the same features
in every epoch, so runs that train only a head on it (``feature_extraction``;
phase 1 of ``two_phase``) compute the pooled backbone features of the TRAIN
and VAL splits once and train the head on them. The head is then attached to
the backbone for ``model.keras`` and the final evaluation (the test split is
always evaluated through the whole model, never from the cache).

A cache folder holds ``key.json`` (the key and its fields), ``train.npy`` and
``val.npy`` (float32, N×D pooled features). The key is a SHA-256 over the
prepared dataset (its manifest and split sizes), the backbone (name, kwargs,
and the identity of its weights: ``imagenet``, the SHA-256 of the weights
file or of the source run's ``model.keras``, or for ``{random: SEED}`` the seed and
the Keras backend, whose random ops draw other numbers from one seed), the model
input size and the interpolation. A run whose spec names ``features_cache``:

* reuses the folder when its key matches (a spot check recomputes a few
  train images with the run's own backbone and fails loudly on a mismatch),
* computes and writes it (atomically) when the folder is absent,
* fails when the folder exists with another key (naming both keys).

Random (``weights: none``) backbones are drawn from the run's seed and have no
identity to key on; such runs compute features in memory and say so in
``metrics.json["features"]``. ``{random: SEED}`` backbones (drawn from SEED alone,
:mod:`tlbench.models.weights`) are cached like pretrained ones.

``tlbench features SPEC.yaml OUTDIR`` (:func:`compute`) fills a cache ahead of
the runs, from a run spec or a features spec
``{dataset: {prepared}, backbone: {name, weights, kwargs},
training: {batch_size, input_size, interpolation}}``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tlbench.core.atomic import atomic_dir, write_json
from tlbench.core.errors import SpecError
from tlbench.core.hashing import sha256_file
from tlbench.models.backbones.applications import build_backbone
from tlbench.models.backbones.hub_presets import PRESET_WEIGHTS, preset_identity
from tlbench.models.inputs import (
    ImageBatches,
    apply_budget,
    fill_input_size,
    fit_input,
    input_pipeline,
    load_prepared,
    pool_features,
)
from tlbench.models.weights import RANDOM, random_seed
from tlbench.training.jit import check_jit_setting, set_forward_jit
from tlbench.training.spec import (
    INTERPOLATIONS,
    budget_seed,
    load_spec_file,
    merge_defaults,
    resolve_spec,
)

KEY_VERSION = 1
SPLITS = ("train", "val")
SPOT_CHECK = 4
FEATURES_DEFAULTS: dict[str, Any] = {
    "dataset": {"name": None, "prepared": "<required>"},
    "backbone": {"name": "<required>", "weights": "imagenet", "kwargs": {}},
    "training": {
        "batch_size": 32,
        "input_size": None,
        "interpolation": "bilinear",
        "jit_compile": "auto",
    },
}


@dataclass
class CachedFeatures:
    """Pooled backbone features of the train and val splits, and where they came from."""

    train: np.ndarray
    val: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def weights_identity(weights: Any, kwargs: Mapping[str, Any] | None = None) -> Any:
    """What identifies a backbone's weights in the cache key (None: not identifiable);
    a keras-hub preset's (``weights: preset``) is its preset's (``kwargs.preset``)."""
    if weights in ("none", None):
        return None
    if weights == "imagenet":
        return "imagenet"
    if weights == PRESET_WEIGHTS:
        return {PRESET_WEIGHTS: preset_identity((kwargs or {})["preset"])}
    seed = random_seed(weights)
    if seed is not None:
        return {RANDOM: seed, "keras_backend": keras.backend.backend()}
    if isinstance(weights, Mapping):
        path = Path(weights["run"]) / "model.keras"
        if not path.is_file():
            raise FileNotFoundError(f"backbone.weights run: {path} does not exist")
        return {"run_model_sha256": sha256_file(path)}
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"backbone.weights: weights file {path} does not exist")
    return {"file_sha256": sha256_file(path)}


def feature_key(spec: Mapping[str, Any], data: Any) -> dict[str, Any]:
    """The cache key fields and their hash (``key["sha256"]``) for a resolved spec."""
    manifest = json.dumps(data.manifest, sort_keys=True, default=str).encode()
    fields = {
        "version": KEY_VERSION,
        "dataset": {
            "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
            "counts": {s: int(len(data.split(s)[1])) for s in SPLITS},
        },
        "backbone": {
            "name": spec["backbone"]["name"],
            "kwargs": spec["backbone"]["kwargs"],
            "weights": weights_identity(spec["backbone"]["weights"], spec["backbone"]["kwargs"]),
        },
        "input_size": int(spec["training"]["input_size"]),
        "interpolation": spec["training"]["interpolation"],
    }
    text = json.dumps(fields, sort_keys=True, default=str)
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "fields": fields}


def cacheable(weights: Any) -> bool:
    """Whether features of a backbone with these (resolved) weights may be cached:
    every kind but ``none``, whose random init is drawn from the run's seed."""
    return weights not in ("none", None)


def feature_extractor(
    backbone: Any,
    image_shape: tuple[int, int, int],
    input_size: int,
    interpolation: str,
    jit_compile: Any = "auto",
) -> keras.Model:
    """Raw images -> Resizing -> Preprocess -> backbone (inference mode) -> pooled features;
    its ``predict`` XLA-compiled per ``jit_compile`` (``training.jit_compile``)."""
    inputs = keras.Input(shape=image_shape, name="image")
    x = input_pipeline(inputs, input_size, interpolation, backbone.preprocess_mode)
    x = backbone.model(x, training=False)
    model = keras.Model(inputs, pool_features(x), name="feature_extractor")
    return set_forward_jit(model, jit_compile)


def extract(extractor: keras.Model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Features of images ``x`` (uint8 N×H×W×3), float32."""
    return np.asarray(
        extractor.predict(fit_input(ImageBatches(x, None, batch_size)), verbose=0), np.float32
    )


def _write_cache(folder: Path, key: dict[str, Any], feats: dict[str, np.ndarray]) -> None:
    with atomic_dir(folder, "features", ("key.json", "*.npy")) as tmp:
        for split, array in feats.items():
            np.save(tmp / f"{split}.npy", array)
        write_json(tmp / "key.json", key)


def _read_cache(folder: Path, key: dict[str, Any]) -> dict[str, np.ndarray]:
    """Load a cache folder whose key must equal ``key``."""
    key_file = folder / "key.json"
    if not key_file.is_file():
        raise SpecError(
            f"features_cache: {folder} exists but has no key.json (not a feature cache)"
        )
    stored = json.loads(key_file.read_text())
    if stored.get("sha256") != key["sha256"]:
        raise SpecError(
            f"features_cache: {folder} holds features with key {stored.get('sha256')} "
            f"({stored.get('fields')}), but this run needs key {key['sha256']} "
            f"({key['fields']}); remove the folder or point features_cache elsewhere"
        )
    return {s: np.load(folder / f"{s}.npy") for s in SPLITS}


def features_for_run(
    spec: Mapping[str, Any], backbone: Any, x_train: np.ndarray, x_val: np.ndarray
) -> CachedFeatures:
    """Features for a head-only phase of a run: from the cache, computed into it, or in memory."""
    training = spec["training"]
    extractor = feature_extractor(
        backbone,
        tuple(x_train.shape[1:]),
        training["input_size"],
        training["interpolation"],
        training["jit_compile"],
    )
    batch = training["batch_size"]
    folder = spec.get("features_cache")
    if folder is None or not cacheable(spec["backbone"]["weights"]):
        info = {"source": "memory"}
        if folder is not None:
            info["note"] = "random backbone weights have no identity to cache under"
        return CachedFeatures(
            extract(extractor, x_train, batch), extract(extractor, x_val, batch), info
        )
    folder = Path(folder)
    whole = load_prepared(spec["dataset"]["prepared"], SPLITS)
    key = feature_key(spec, whole)
    info = {"path": str(folder), "key": key["sha256"]}
    # The cache holds every train image (its key names neither budget nor seed); a label
    # budget's run takes the rows of its subset, drawn from the run's seed.
    budget = spec["dataset"].get("budget")
    rows = (
        None if budget is None else apply_budget(whole, budget, budget_seed(spec))[0].train_indices
    )
    if folder.exists():
        feats = _read_cache(folder, key)
        info["source"] = "cache"
    else:
        feats = {
            "train": extract(
                extractor, x_train if rows is None else whole.split("train")[0], batch
            ),
            "val": extract(extractor, x_val, batch),
        }
        _write_cache(folder, key, feats)
        info["source"] = "computed"
    if rows is not None and len(feats["train"]) == whole.counts["train"]:
        feats["train"] = feats["train"][rows]
        info["budget_rows"] = len(rows)
    if info["source"] == "cache":
        _spot_check(folder, feats, extractor, x_train, batch)
    for split, x in (("train", x_train), ("val", x_val)):
        if len(feats[split]) != len(x):
            raise SpecError(
                f"features_cache: {folder}/{split}.npy has {len(feats[split])} rows, "
                f"the {split} split {len(x)} images"
            )
    return CachedFeatures(feats["train"], feats["val"], info)


def _spot_check(
    folder: Path,
    feats: dict[str, np.ndarray],
    extractor: keras.Model,
    x_train: np.ndarray,
    batch: int,
) -> None:
    """Recompute a few cached train features with the run's backbone; they must agree."""
    n = min(SPOT_CHECK, len(x_train))
    # a direct (eager) call: no predict function to trace for four images
    fresh = keras.ops.convert_to_numpy(
        extractor(np.asarray(x_train[:n], np.float32), training=False)
    ).astype(np.float32)
    cached = feats["train"][:n]
    if fresh.shape != cached.shape:
        raise SpecError(
            f"features_cache: {folder} has features of shape {cached.shape[1:]}, "
            f"this run's backbone gives {fresh.shape[1:]}"
        )
    error = np.linalg.norm(fresh - cached) / max(np.linalg.norm(cached), 1e-12)
    if error > 1e-2:
        raise SpecError(
            f"features_cache: {folder} disagrees with this run's backbone "
            f"(relative difference {error:.3g} on {n} train images)"
        )


def resolve_features_spec(spec: Mapping[str, Any] | str | os.PathLike) -> dict[str, Any]:
    """A run spec (resolved fully) or a features spec (dataset, backbone, training subset)."""

    if not isinstance(spec, Mapping):
        spec = load_spec_file(spec)
    if "strategy" in spec:
        return resolve_spec(spec)
    resolved = merge_defaults(FEATURES_DEFAULTS, spec, "")
    training = resolved["training"]
    size = training["input_size"]
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 8):
        raise SpecError(f"training.input_size: {size!r} must be null or an integer >= 8")
    batch = training["batch_size"]
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise SpecError(f"training.batch_size: {batch!r} must be an integer >= 1")
    check_jit_setting(training["jit_compile"])
    if training["interpolation"] not in INTERPOLATIONS:
        raise SpecError(
            f"training.interpolation: {training['interpolation']!r} is not valid; "
            f"valid values: {', '.join(INTERPOLATIONS)}"
        )
    return resolved


def compute(spec: Mapping[str, Any] | str | os.PathLike, outdir: str | os.PathLike) -> Path:
    """Fill the feature cache ``outdir`` for ``spec`` (kept when its key already matches)."""

    spec = resolve_features_spec(spec)
    if not cacheable(spec["backbone"]["weights"]):
        raise SpecError(
            "backbone.weights: 'none' (random init) cannot be cached: its features depend on "
            "the run's seed; valid weights here: imagenet, a weights file, {run: <run folder>}, "
            "{random: SEED}"
        )
    data = load_prepared(spec["dataset"]["prepared"], SPLITS)  # never the test split
    training = spec["training"]
    fill_input_size(training, data)
    key = feature_key(spec, data)
    outdir = Path(outdir)
    if outdir.exists():
        _read_cache(outdir, key)  # a matching cache is kept; another key is an error
        return outdir
    isz = training["input_size"]
    backbone = build_backbone(spec["backbone"], (isz, isz, 3))
    x_train = data.split("train")[0]
    extractor = feature_extractor(
        backbone, tuple(x_train.shape[1:]), isz, training["interpolation"], training["jit_compile"]
    )
    feats = {s: extract(extractor, data.split(s)[0], training["batch_size"]) for s in SPLITS}
    _write_cache(outdir, key, feats)
    return outdir
